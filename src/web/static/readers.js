// The readers' pages: every article Morris wrote with its lineage and feedback (#generations,
// one record at #generations/<id>), and the preference pairs derived from that feedback (#pairs).
// Article and edit texts are readers' and the model's words, never markup: they go in through
// textContent or esc(), nothing else.

import { $, api, cards, esc, flash, when } from './common.js';

const PAGE = 20;
let genOffset = 0;
let pairOffset = 0;
let pairSource = '';

const link = (id) => (id ? `<a href="#generations/${encodeURIComponent(id)}" data-gen="${esc(id)}"><code>${esc(id)}</code></a>` : '—');
const outcome = (o) => `<span class="outcome-${esc(o)}">${esc(o)}</span>`;
// Words, not 👍/👎: a machine without an emoji font would show empty boxes.
const rating = (v) => (v === 1 ? 'rated up' : v === -1 ? 'rated down' : 'rated');

/** The pager's text and buttons; returns nothing, the buttons carry the next offset. */
function pager(el, { total, offset, limit }, shown) {
  const from = shown ? offset + 1 : 0;
  el.querySelector('.range').textContent = `${from}–${offset + shown} of ${total}`;
  el.querySelector('[data-dir="prev"]').disabled = offset === 0;
  el.querySelector('[data-dir="next"]').disabled = offset + limit >= total;
}

function lineage(g) {
  return `<div><b>${esc(g.platform)}</b> · ${esc(g.userId ?? '—')}${g.channelId ? ` in ${esc(g.channelId)}` : ''}</div>
    <div class="muted">adapter <code>${esc(g.adapterId ?? 'none')}</code> · base ${esc(g.baseModel ?? '—')} · dataset <code>${esc(g.datasetId ?? '—')}</code></div>
    <div class="muted">${when(g.startedAt)}${g.durationMs != null ? ` · ${(g.durationMs / 1000).toFixed(1)} s` : ''}</div>
    ${origin(g, 'div')}`;
}

/** How an article came to be: a revision (with what was asked) or a regeneration of its parent. */
function origin(g, tag) {
  if (!g.parentId) return '';
  const what = g.kind === 'revise' ? `revises ${link(g.parentId)}: “${esc(g.instruction ?? '')}”` : `regenerates ${link(g.parentId)}`;
  return `<${tag}>${what}</${tag}>`;
}

function signalLine(f) {
  const what = f.kind === 'rating' ? rating(f.value) : f.kind === 'edit' ? `edit (${f.editChars ?? f.editedText?.length ?? 0} chars)` : f.kind;
  return `<li class="signal-${esc(f.kind)}">${what} by ${esc(f.platform)}:${esc(f.userId)} <span class="muted">${when(f.at)}</span></li>`;
}

// ------------------------------------------------------------------ generations
export async function loadGenerations(id) {
  const d = await api(`/api/generations?limit=${PAGE}&offset=${genOffset}`);
  $('#generations tbody').innerHTML =
    d.generations
      .map(
        (g) => `<tr data-generation="${esc(g.id)}" class="${g.id === id ? 'selected' : ''}">
        <td>${link(g.id)}<div class="topic">${esc(g.topic)}</div><div class="excerpt muted">${esc(g.excerpt ?? '(no text kept)')}</div></td>
        <td class="lineage">${lineage(g)}</td>
        <td>${outcome(g.outcome)}${g.error ? `<div class="muted">${esc(g.error)}</div>` : ''}</td>
        <td><ul class="signals">${g.feedback.signals.map(signalLine).join('')}</ul></td>
        <td>${[...g.regenerations.map(link), ...g.revisions.map((r) => `${link(r)} (revision)`)].join('<br>') || '—'}</td></tr>`,
      )
      .join('') || '<tr><td colspan="5" class="muted">No articles yet — ask Morris in Slack, Discord or the playground.</td></tr>';
  pager($('#gen-pager'), d, d.generations.length);
  if (id) await showRecord(id);
  else $('#generation-record').hidden = true;
}

async function showRecord(id) {
  const { generation: g, feedback, family, pairs } = await api(`/api/generations/${encodeURIComponent(id)}`);
  $('#record-title').textContent = `${g.id}: ${g.topic}`;
  $('#record-lineage').innerHTML = [
    ['Platform', g.platform],
    ['User', g.userId],
    ['Channel', g.channelId],
    ['Outcome', g.outcome],
    ['Adapter', g.adapterId ?? 'none (base model)'],
    ['Base model', g.baseModel],
    ['Dataset', g.datasetId],
    ['Started', when(g.startedAt)],
    ['Duration', g.durationMs != null ? `${(g.durationMs / 1000).toFixed(1)} s` : null],
    ['Options', g.options == null ? null : JSON.stringify(g.options)],
    ['Error', g.error],
  ]
    .map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v ?? '—')}</dd>`)
    .join('');
  $('#record-parent').innerHTML = g.parentId
    ? g.kind === 'revise'
      ? `Revises ${link(g.parentId)}, asked: “${esc(g.instruction ?? '')}”`
      : `Regenerates ${link(g.parentId)}`
    : 'First ask (regenerates nothing)';
  // The article as written, shown as text whatever it contains.
  $('#record-text').textContent = g.article ?? '(no text kept for this request)';
  $('#record-feedback').innerHTML = feedback.signals.length
    ? feedback.signals
        .map(
          (f) => `<li class="signal-${esc(f.kind)}">${f.kind === 'rating' ? rating(f.value) : esc(f.kind)} by ${esc(f.platform)}:${esc(f.userId)}
          <span class="muted">${when(f.at)}</span>${f.kind === 'edit' ? `<pre class="edit">${esc(f.editedText)}</pre>` : ''}</li>`,
        )
        .join('')
    : '<li class="muted">No feedback yet.</li>';
  $('#record-family').innerHTML = family
    .map((m) => `<li class="${m.id === g.id ? 'current' : ''}">${link(m.id)} ${outcome(m.outcome)} <span class="muted">${when(m.startedAt)} · ${esc(m.adapterId ?? 'none')}</span></li>`)
    .join('');
  $('#record-pairs').innerHTML = pairs.length ? pairs.map((p) => `<li>${esc(p.source)}: chosen ${p.chosenId ? link(p.chosenId) : 'the reader’s edit'} over ${link(p.rejectedId)}</li>`).join('') : '<li class="muted">In no pair.</li>';
  $('#generation-record').hidden = false;
  document.body.dataset.record = g.id;
}

$('#generations').addEventListener('click', (ev) => {
  if (ev.target.closest('a')) return; // links navigate by themselves
  const row = ev.target.closest('[data-generation]');
  if (row) location.hash = `#generations/${encodeURIComponent(row.dataset.generation)}`;
});
$('#gen-pager').addEventListener('click', (ev) => {
  const dir = ev.target.closest('[data-dir]')?.dataset.dir;
  if (!dir) return;
  genOffset = Math.max(0, genOffset + (dir === 'next' ? PAGE : -PAGE));
  loadGenerations(null).catch((e) => flash(e.message, true));
});

// ------------------------------------------------------------------ pairs
export async function loadPairs() {
  const d = await api(`/api/pairs?limit=${PAGE}&offset=${pairOffset}${pairSource ? `&source=${pairSource}` : ''}`);
  cards($('#pair-counts'), [
    ['Pairs', d.counts.total],
    ['From edits', d.counts.edit],
    ['From ratings', d.counts.rating],
    ['From picks', d.counts.pick],
  ]);
  for (const b of document.querySelectorAll('#pair-filter [data-source]')) b.classList.toggle('current', b.dataset.source === pairSource);
  $('#pairs').innerHTML =
    d.pairs
      .map(
        (p) => `<div class="pair source-${esc(p.source)}">
        <h4>${esc(p.topic)} <span class="muted">· from ${esc(p.source)}</span></h4>
        <div class="sides">
          <div class="chosen"><h5>Chosen · ${p.chosenId ? link(p.chosenId) : 'the reader’s edit'}</h5><pre>${esc(p.chosen)}</pre></div>
          <div class="rejected"><h5>Rejected · ${link(p.rejectedId)}</h5><pre>${esc(p.rejected)}</pre></div>
        </div></div>`,
      )
      .join('') || '<p class="muted">No pairs yet: they come from readers’ edits, ratings across regenerations, and picks.</p>';
  pager($('#pair-pager'), d, d.pairs.length);
}

$('#pair-filter').addEventListener('click', (ev) => {
  const b = ev.target.closest('[data-source]');
  if (!b) return;
  pairSource = b.dataset.source;
  pairOffset = 0;
  loadPairs().catch((e) => flash(e.message, true));
});
$('#pair-pager').addEventListener('click', (ev) => {
  const dir = ev.target.closest('[data-dir]')?.dataset.dir;
  if (!dir) return;
  pairOffset = Math.max(0, pairOffset + (dir === 'next' ? PAGE : -PAGE));
  loadPairs().catch((e) => flash(e.message, true));
});
