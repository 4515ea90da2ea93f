// The sign-in page: trades the admin token for a session cookie, then opens the dashboard.
const $ = (sel) => document.querySelector(sel);

async function post(path, body) {
  const res = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error ? `${data.error.message}${data.error.hint ? ' — ' + data.error.hint : ''}` : `HTTP ${res.status}`);
  return data;
}

const session = await fetch('/api/session').then((r) => r.json()).catch(() => ({}));
if (session.signedIn) location.replace('/');
else if (session.tokenConfigured === false) {
  $('#login-note').textContent = 'No admin token is set on this server, so the dashboard answers only to browsers on the server itself. Set MORRIS_ADMIN_TOKEN to sign in from elsewhere.';
  $('#login-form').hidden = true;
}

$('#login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('#login-error').hidden = true;
  try {
    await post('/login', { token: $('#token').value.trim() });
    location.replace('/');
  } catch (e) {
    $('#login-error').textContent = e.message;
    $('#login-error').hidden = false;
  }
});
