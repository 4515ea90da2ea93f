// What every dashboard page shares: element lookup, escaping, dates, the flash line and the API
// call. A module of its own so the pages can live in files of their own (app.js, readers.js).

export const $ = (sel) => document.querySelector(sel);

/** Every value from the API goes through this before it meets innerHTML: data is never markup. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}
export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}
export function flash(text, isError = false) {
  const f = $('#flash');
  f.textContent = text;
  f.className = isError ? 'error' : '';
  f.hidden = false;
  clearTimeout(flash.t);
  flash.t = setTimeout(() => (f.hidden = true), 6000);
}

export async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  // State changes are JSON, always (the server refuses anything else with 415).
  if (method !== 'GET') headers['content-type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: method === 'GET' ? undefined : JSON.stringify(body ?? {}) });
  if (res.status === 401) location.replace('/login');
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error ? `${data.error.message}${data.error.hint ? ' — ' + data.error.hint : ''}` : `HTTP ${res.status}`);
  return data;
}

export function cards(el, entries) {
  el.innerHTML = entries.map(([k, v]) => `<div class="card"><h4>${esc(k)}</h4><div class="v">${esc(v)}</div></div>`).join('');
}
