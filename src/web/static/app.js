// The dashboard: plain ES modules, no framework, no network beyond this server's own /api.
// Every number on these pages comes from the documented JSON API (docs/api.md).

import { $, api, cards, esc, flash, when } from './common.js';
import { loadGenerations, loadPairs } from './readers.js';

// The session cookie (HttpOnly, set by /login) authorises every call; no token lives in the page.
$('#sign-out').addEventListener('click', async (ev) => {
  ev.preventDefault();
  await fetch('/logout', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  location.replace('/login');
});

// ------------------------------------------------------------------ status
async function loadStatus() {
  const s = await api('/api/status');
  const e = s.engine ?? {};
  cards($('#status-cards'), [
    ['Base model', s.generator?.baseModel ?? e.baseModel ?? e.configuredBaseModel ?? '—'],
    ['Device', e.device ?? `${e.configuredDevice ?? 'auto'} (chosen when the model loads)`],
    ['Model loaded', e.loaded === undefined ? '—' : e.loaded ? 'yes' : 'no (loads on first request)'],
    ['Active adapter', s.activeAdapter?.id ?? 'none (base model)'],
    ['Queue', `${e.queueLength ?? 0} waiting${e.running ? ', 1 being written' : ''}`],
    ['Bots', s.bots.length ? s.bots.map((b) => `${b.platform}: ${b.state}`).join(', ') : 'none configured'],
    ['Running jobs', s.jobs.running.length ? s.jobs.running.map((r) => `${r.job} #${r.id} ${Math.round(r.progress * 100)}%`).join(', ') : 'none'],
    ['Version', s.version],
  ]);
  $('#scheduled tbody').innerHTML = s.jobs.scheduled.length
    ? s.jobs.scheduled.map((j) => `<tr><td>${esc(j.job)}</td><td>${esc(j.columnist ?? defaultVoice(s))}</td><td><code>${esc(j.expression)}</code></td><td>${when(j.nextRun)}</td></tr>`).join('')
    : '<tr><td colspan="4" class="muted">No schedules (all set to "off").</td></tr>';
  // Each voice on its own line with its own Run buttons; a folder that does not check out says why.
  const t = s.training;
  $('#training-turn').textContent = t?.holder
    ? `Training on this host: ${t.holder.what} (${t.holder.command}, pid ${t.holder.pid}) since ${new Date(t.holder.since).toLocaleString()}${t.queued?.length ? `; waiting here: ${t.queued.join(', ')}` : ''}`
    : 'Nothing trains on this host now (one training at a time, across processes).';
  $('#columnists tbody').innerHTML =
    s.columnists.map(columnistRow).join('') || '<tr><td colspan="9" class="muted">No columnist folders.</td></tr>';
}

/** The default columnist's name (its schedules carry none). */
function defaultVoice(s) {
  return s.columnists.find((c) => c.default)?.name ?? '';
}

const STEPS = [['rescrape', 'scrape'], ['rebuild', 'dataset'], ['retrain', 'train'], ['evaluate', 'evaluate'], ['dpo', 'dpo']];
/** The chain starts an admin may run for one voice (each posts the job with that columnist). */
const RUNNABLE = ['rescrape', 'rebuild', 'retrain', 'dpo'];

function runButtons(name) {
  return RUNNABLE.map((j) => `<button data-run-job="${j}" data-columnist="${esc(name)}">Run ${j}</button>`).join(' ');
}

function columnistRow(c) {
  const name = `${esc(c.displayName ?? c.name)} <code>${esc(c.name)}</code>${c.default ? ' (default)' : ''}`;
  const last = STEPS.map(([job, label]) => {
    const r = c.last?.[job];
    return r ? `${label} <span class="status-${r.status}">${esc(r.status)}</span> ${when(r.ended_at ?? r.started_at)}` : `${label} —`;
  }).join('<br>');
  const broken = c.ok ? '' : `<div class="muted">does not load, the scheduler skips it: ${esc(c.problems.join('; '))}</div>`;
  const schedule = c.scheduled.length
    ? c.scheduled.map((x) => `${esc(x.job)} <code>${esc(x.expression)}</code>`).join(', ')
    : c.schedule
      ? `not scheduled here (${Object.entries(c.schedule).map(([j, e]) => `${esc(j)} <code>${esc(e)}</code>`).join(', ')})`
      : 'none';
  return `<tr data-columnist="${esc(c.name)}"><td>${name}${broken}</td><td>${c.articles}</td><td><code>${esc(c.latestDataset ?? '—')}</code></td>` +
    `<td><code>${esc(c.activeAdapter?.id ?? 'base model')}</code></td><td>${last}</td><td>${c.pairs.total} (${c.pairs.new} new)</td><td>${schedule}</td>` +
    `<td>${c.running.map((r) => `${esc(r.job)} #${r.id} ${Math.round(r.progress * 100)}%`).join(', ') || '—'}</td>` +
    `<td>${c.ok ? `<div class="actions">${runButtons(c.name)}</div>` : ''}</td></tr>`;
}

// Run buttons on the status and jobs pages: the job, for the voice the button belongs to.
document.addEventListener('click', async (ev) => {
  const b = ev.target.closest('[data-run-job]');
  if (!b) return;
  try {
    const r = await api(`/api/jobs/${b.dataset.runJob}/run`, { method: 'POST', body: { columnist: b.dataset.columnist } });
    flash(r.started ? `Started ${r.run.job} #${r.run.id} for ${r.run.columnist ?? b.dataset.columnist}` : `Skipped: ${r.run.message}`);
    const page = currentPage();
    if (page === 'jobs' || page === 'status') await loaders[page]();
  } catch (e) {
    flash(e.message, true);
  }
});

// ------------------------------------------------------------------ data
async function loadData() {
  const d = await api('/api/data');
  const last = d.lastScrapes.map((s) => s.ended_at ?? s.started_at).sort().pop();
  cards($('#data-cards'), [
    ['Articles (ok)', d.articlesOk],
    ['Last scrape', when(last)],
    ['Datasets', d.datasets.length],
    ['Latest dataset', d.datasets[0]?.id ?? '—'],
  ]);
  $('#articles tbody').innerHTML =
    d.articles.map((a) => `<tr><td>${esc(a.source)}</td><td>${esc(a.status)}</td><td>${a.n}</td><td>${when(a.last_updated)}</td></tr>`).join('') ||
    '<tr><td colspan="4" class="muted">No articles yet — run a rescrape.</td></tr>';
  $('#datasets tbody').innerHTML =
    d.datasets.map((x) => `<tr><td><code>${esc(x.id)}</code></td><td>${when(x.created_at)}</td><td>${x.train_count}</td><td>${x.val_count}</td></tr>`).join('') ||
    '<tr><td colspan="4" class="muted">No datasets yet.</td></tr>';
}

// ------------------------------------------------------------------ jobs
let selectedRun = null;
let lastLogId = 0;
async function loadJobs() {
  const [j, s] = await Promise.all([api('/api/jobs?limit=50'), api('/api/status')]);
  $('#job-buttons').innerHTML = s.columnists
    .filter((c) => c.ok)
    .map((c) => `<div class="actions" data-columnist="${esc(c.name)}"><strong>${esc(c.displayName ?? c.name)}</strong> ${runButtons(c.name)}</div>`)
    .join('');
  $('#runs tbody').innerHTML = j.runs
    .map(
      (r) => `<tr data-run="${r.id}" class="${r.id === selectedRun ? 'selected' : ''}">
      <td>${r.id}</td><td>${esc(r.job)}</td><td>${esc(r.columnist ?? '')}</td><td>${esc(r.trigger)}</td><td class="status-${r.status}">${r.status}</td>
      <td><progress max="1" value="${r.progress}"></progress> ${Math.round(r.progress * 100)}%</td>
      <td>${when(r.started_at)}</td><td>${when(r.ended_at)}</td><td>${esc(r.error ?? r.message ?? '')}</td>
      <td>${r.status === 'running' ? `<button data-cancel="${r.id}" class="danger">Cancel</button>` : ''}</td></tr>`,
    )
    .join('');
  if (selectedRun) await loadLog();
}
async function loadLog() {
  const { run, logs } = await api(`/api/jobs/${selectedRun}?after=${lastLogId}`);
  $('#log-title').textContent = `Log of #${run.id} ${run.job} (${run.status})`;
  if (lastLogId === 0) $('#run-log').textContent = '';
  for (const l of logs) $('#run-log').textContent += `${l.at} ${l.level.padEnd(5)} ${l.line}\n`;
  if (logs.length) lastLogId = logs[logs.length - 1].id;
}
$('#runs').addEventListener('click', async (ev) => {
  const cancel = ev.target.closest('[data-cancel]');
  if (cancel) {
    try {
      await api(`/api/jobs/${cancel.dataset.cancel}/cancel`, { method: 'POST' });
      flash(`Cancelling #${cancel.dataset.cancel}…`);
    } catch (e) {
      flash(e.message, true);
    }
    return;
  }
  const row = ev.target.closest('[data-run]');
  if (!row) return;
  selectedRun = Number(row.dataset.run);
  lastLogId = 0;
  await loadJobs();
});

// ------------------------------------------------------------------ adapters
let selectedAdapter = null;
async function loadAdapters() {
  const a = await api('/api/adapters');
  $('#adapters tbody').innerHTML =
    a.adapters
      .map((x) => {
        const loss = x.valLoss; // the server's one rule: the gate's figure, else the trainer's
        return `<tr data-adapter="${esc(x.id)}" class="${x.id === selectedAdapter ? 'selected' : ''}">
        <td><code>${esc(x.id)}</code></td><td>${esc(x.columnist)}</td><td>${when(x.created_at)}</td><td class="status-${x.status}">${x.status}</td>
        <td><code>${esc(x.dataset_id ?? '—')}</code></td><td>${typeof loss === 'number' ? loss.toFixed(4) : '—'}</td>
        <td>${esc(x.reason ?? '')}</td>
        <td>${x.status === 'active' ? '' : `<button data-promote="${esc(x.id)}" class="primary">Promote</button>`}</td></tr>`;
      })
      .join('') || '<tr><td colspan="8" class="muted">No adapters yet — run a retrain.</td></tr>';
  // The default voice's roll-back button (its active adapter is `a.active`), then one for each
  // other voice with an active adapter.
  for (const b of document.querySelectorAll('#rollbacks [data-rollback]')) b.remove();
  for (const x of a.adapters.filter((x) => x.status === 'active' && x.id !== a.active)) {
    $('#rollbacks').insertAdjacentHTML('beforeend', ` <button class="danger" data-rollback="${esc(x.columnist)}">Roll back ${esc(x.columnist)}'s active adapter</button>`);
  }
  if (!selectedAdapter && a.adapters.length) selectedAdapter = a.active ?? a.adapters[0].id;
  if (selectedAdapter) await loadCurve(selectedAdapter);
}
async function loadCurve(id) {
  const { curve } = await api(`/api/adapters/${encodeURIComponent(id)}`);
  $('#chart-title').textContent = `Loss curve of ${id}`;
  $('#loss-chart').innerHTML = lossChartSvg(curve);
}
$('#adapters').addEventListener('click', async (ev) => {
  const p = ev.target.closest('[data-promote]');
  if (p) {
    try {
      const r = await api(`/api/adapters/${encodeURIComponent(p.dataset.promote)}/promote`, { method: 'POST' });
      flash(`Active adapter is now ${r.active}`);
      await loadAdapters();
    } catch (e) {
      flash(e.message, true);
    }
    return;
  }
  const row = ev.target.closest('[data-adapter]');
  if (!row) return;
  selectedAdapter = row.dataset.adapter;
  await loadAdapters();
});
$('#rollbacks').addEventListener('click', async (ev) => {
  const b = ev.target.closest('button');
  if (!b) return;
  const voice = b.dataset.rollback;
  try {
    const r = await api('/api/adapters/rollback', { method: 'POST', body: voice ? { columnist: voice } : {} });
    flash(`Rolled back${voice ? ` ${voice}` : ''}: ${r.active ?? 'base model'} answers now`);
    await loadAdapters();
  } catch (e) {
    flash(e.message, true);
  }
});

/** Train and eval loss against step as an SVG line chart. */
export function lossChartSvg(curve, w = 720, h = 280) {
  const series = [
    { name: 'train', pts: curve.train, color: '#8a1c1c' },
    { name: 'validation', pts: curve.eval, color: '#1c4f8a' },
  ].filter((s) => s.pts.length);
  if (!series.length) return '<p class="muted">No loss metrics recorded for this adapter.</p>';
  const all = series.flatMap((s) => s.pts);
  const pad = { l: 52, r: 16, t: 14, b: 32 };
  const xs = all.map((p) => p.step);
  const ys = all.map((p) => p.loss);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-9) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const X = (x) => pad.l + ((x - x0) / (x1 - x0 || 1)) * (w - pad.l - pad.r);
  const Y = (y) => h - pad.b - ((y - y0) / (y1 - y0)) * (h - pad.t - pad.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => y0 + f * (y1 - y0));
  const grid = ticks
    .map((t) => `<line x1="${pad.l}" x2="${w - pad.r}" y1="${Y(t)}" y2="${Y(t)}" stroke="#eee"/><text x="${pad.l - 6}" y="${Y(t) + 4}" text-anchor="end">${t.toFixed(3)}</text>`)
    .join('');
  const lines = series
    .map((s) => {
      const d = s.pts.map((p) => `${X(p.step).toFixed(1)},${Y(p.loss).toFixed(1)}`).join(' ');
      const dots = s.pts.length < 60 ? s.pts.map((p) => `<circle cx="${X(p.step)}" cy="${Y(p.loss)}" r="2.5" fill="${s.color}"/>`).join('') : '';
      return `<polyline class="series-${s.name}" fill="none" stroke="${s.color}" stroke-width="2" points="${d}"/>${dots}`;
    })
    .join('');
  const legend = series.map((s, i) => `<text x="${w - pad.r - 150 + i * 75}" y="${pad.t + 4}" class="legend-${s.name}">■ ${s.name}</text>`).join('');
  return `<svg id="loss-svg" viewBox="0 0 ${w} ${h}" width="100%" role="img" aria-label="loss curve">
    ${grid}<line x1="${pad.l}" x2="${w - pad.r}" y1="${h - pad.b}" y2="${h - pad.b}" stroke="#999"/>
    <text x="${pad.l}" y="${h - 8}">step ${x0}</text><text x="${w - pad.r}" y="${h - 8}" text-anchor="end">step ${x1}</text>
    ${lines}${legend}</svg>`;
}

// ------------------------------------------------------------------ playground
$('#generate-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const out = $('#output');
  const status = $('#gen-status');
  out.textContent = '';
  delete out.dataset.done;
  $('#generate').disabled = true;
  status.textContent = 'Sending…';
  try {
    const res = await fetch('/api/generate', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ topic: $('#topic').value, maxNewTokens: Number($('#max-tokens').value), temperature: Number($('#temperature').value) }),
    });
    if (!res.ok) {
      const data = await res.json().catch(() => ({}));
      out.dataset.done = 'true';
      throw new Error(data.error ? `${data.error.message}${data.error.hint ? ' — ' + data.error.hint : ''}` : `HTTP ${res.status}`);
    }
    // The same core as the bots: notices (queue position, writing…), the text as it grows, then
    // the article as it leaves Morris (attribution included) or why it failed.
    await readSse(res.body, (event, data) => {
      if (event === 'notice') status.textContent = data.text;
      else if (event === 'text') out.textContent += data.text;
      else if (event === 'done') {
        out.textContent = data.text;
        out.dataset.done = 'true';
        status.textContent = `Done${data.cut ? ' (cut short)' : ''} — adapter: ${data.adapterId ?? 'none'}`;
      } else if (event === 'failed') {
        out.dataset.done = 'true';
        status.textContent = `Failed: ${data.text}`;
      } else if (event === 'error') throw new Error(data.message);
    });
  } catch (e) {
    status.textContent = `Failed: ${e.message}`;
  } finally {
    $('#generate').disabled = false;
  }
});

/** Minimal Server-Sent Events reader over a fetch body (EventSource cannot POST). */
async function readSse(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (data) onEvent(event, JSON.parse(data));
    }
  }
}

// ------------------------------------------------------------------ navigation and live updates
const loaders = { status: loadStatus, data: loadData, jobs: loadJobs, adapters: loadAdapters, generations: loadGenerations, pairs: loadPairs, playground: async () => {} };
// `#generations/g-7f3a9c2e41`: the page, then what it shows (one article's record), so a record
// has a link of its own and Back returns to the list.
function currentPage() {
  const [p] = location.hash.slice(1).split('/');
  return loaders[p] ? p : 'status';
}
function pageArg() {
  const rest = location.hash.slice(1).split('/').slice(1).join('/');
  return rest ? decodeURIComponent(rest) : null;
}
async function show() {
  const page = currentPage();
  for (const s of document.querySelectorAll('.page')) s.hidden = s.id !== `page-${page}`;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.dataset.page === page);
  try {
    await loaders[page](pageArg());
    document.body.dataset.loaded = page;
  } catch (e) {
    flash(e.message, true);
  }
}
window.addEventListener('hashchange', show);
show();

// Job progress streams in; the visible page refreshes on job events (throttled).
let refreshTimer = null;
const events = new EventSource('/api/jobs/events');
for (const type of ['start', 'end', 'progress', 'skipped']) {
  events.addEventListener(type, () => {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      const page = currentPage();
      if (page !== 'playground') loaders[page](pageArg()).catch(() => {});
    }, 500);
  });
}
