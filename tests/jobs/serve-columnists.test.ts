/**
 * Two columnists end to end in one `morris serve` (tiny model): each voice's cron tick runs its
 * own chain (scrape → rebuild → retrain → evaluate), the trainings take turns, each gate compares a
 * candidate only with its own columnist's active adapter, simultaneous requests for both voices
 * decode together on the one model, each text equal to what that voice's adapter writes alone
 * (greedy), and Slack's `/morris --as` and Discord's `columnist:` option reach that voice's adapter.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServeHandle } from '../../src/serve/start.ts';
import type { DoneEvent, GenerationEvent } from '../../src/generation-events.ts';
import { getConfig, loadConfig } from '../../src/config.ts';
import { voiceRouteFromStore } from '../../src/serve/generator-adapters.ts';
import { addColumnist } from '../../src/columnists/folder.ts';
import { COLUMNISTS_DIR } from '../../src/paths.ts';
import { listRuns } from '../../src/store/job-runs.ts';
import { datasetColumnist } from '../../src/store/datasets.ts';
import { getAdapter } from '../../src/jobs/registry.ts';
import { SAMPLE_ARCHIVE_DIR, startSampleSite, type SampleSite } from '../../src/pipeline/crawl/sample-site.ts';
import { startTinyServe, waitFor } from './helpers.ts';
import { FakeSlack, postSigned, slashCommand } from '../bot/fakes/slack-server.ts';
import { FakeDiscord } from '../bot/fakes/discord-server.ts';

const SECRET = 'serve-voices-secret';
const slack = new FakeSlack();
const discord = new FakeDiscord();

let root: string;
let h: ServeHandle;
let close: () => Promise<void>;
let rivalSite: SampleSite;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'morris-serve-voices-'));
const columnists = path.join(work, 'columnists');

beforeAll(async () => {
  // The rival's own site: half of the sample archive, on a port of its own.
  const articles = path.join(work, 'rival-site');
  fs.mkdirSync(articles);
  fs.mkdirSync(columnists);
  for (const f of fs.readdirSync(SAMPLE_ARCHIVE_DIR).filter((x) => x.endsWith('.md')).sort().slice(0, 14)) fs.copyFileSync(path.join(SAMPLE_ARCHIVE_DIR, f), path.join(articles, f));
  rivalSite = await startSampleSite({ dir: articles });
  fs.cpSync(path.join(COLUMNISTS_DIR, 'morris'), path.join(columnists, 'morris'), { recursive: true });
  addColumnist('rival', loadConfig({ MORRIS_COLUMNISTS_DIR: columnists }), { displayName: 'The Rival', attribution: 'a rival columnist' });
  fs.writeFileSync(path.join(columnists, 'rival', 'system-prompt.md'), 'You are the Rival, a brisk and upbeat columnist.\n');
  fs.writeFileSync(
    path.join(columnists, 'rival', 'columnist.json'),
    JSON.stringify({ displayName: 'The Rival', attribution: 'a rival columnist', schedule: { rescrape: '* * * * *' }, retrain: { minNewExamples: 1 } }),
  );
  const profile = JSON.parse(fs.readFileSync(path.join(COLUMNISTS_DIR, 'morris', 'sources', 'sample-archive.json'), 'utf8'));
  fs.writeFileSync(path.join(columnists, 'rival', 'sources', 'archive.json'), JSON.stringify({ ...profile, name: 'archive', baseUrl: rivalSite.url }));
  await slack.start();
  await discord.start();
  ({ root, h, close } = await startTinyServe(
    'morris-serve-columnists-',
    {
      MORRIS_CRON_RESCRAPE: '* * * * *',
      MORRIS_COLUMNISTS_DIR: columnists,
      SLACK_BOT_TOKEN: 'xoxb-serve',
      SLACK_SIGNING_SECRET: SECRET,
      SLACK_API_URL: slack.apiUrl,
      DISCORD_TOKEN: 'discord-serve',
      DISCORD_API_URL: discord.apiUrl,
    },
    { bots: true },
  ));
  await h.bots.settled();
  // Cron has minutes, not seconds: both voices' first ticks are fired now, as the cron fires them.
  void h.scheduler.tick('rescrape');
  void h.scheduler.tick('rescrape', 'rival');
}, 60_000);

afterAll(async () => {
  await close?.();
  await slack.stop();
  await discord.stop();
  await rivalSite?.close();
  fs.rmSync(work, { recursive: true, force: true });
});

/** A generation's final text and the adapter that wrote it. */
async function doneOf(events: AsyncIterable<GenerationEvent>): Promise<{ text: string; adapterId: string | null | undefined }> {
  let done: DoneEvent | undefined;
  for await (const ev of events) if (ev.type === 'done') done = ev;
  return { text: done!.text, adapterId: done!.adapterId };
}

/** Greedy, through the bots' generator port (which resolves the columnist). */
const write = (topic: string, columnist?: string) =>
  doneOf(h.generator.generate({ topic, maxNewTokens: 24, temperature: 0, requestId: topic, ...(columnist ? { columnist } : {}) }));

/** Runs the requests at once; `most` is how many the service had running at the same moment. */
async function atOnce<T>(requests: () => Promise<T>[]): Promise<{ results: T[]; most: number }> {
  let most = 0;
  const poll = setInterval(() => (most = Math.max(most, h.service.status().runningCount)), 1);
  try {
    return { results: await Promise.all(requests()), most };
  } finally {
    clearInterval(poll);
  }
}

describe('serve: two columnists', () => {
  it("both chains run on their voice's schedule, trainings take turns, each promotes its own adapter", async () => {
    const morrisActive = await waitFor(() => h.registry.active(), 240_000, 500);
    const rivalActive = await waitFor(() => h.registry.active('rival'), 240_000, 500);
    expect(h.scheduler.jobs()).toContainEqual(expect.objectContaining({ job: 'rescrape', columnist: 'rival', expression: '* * * * *' }));
    for (const [voice, active] of [['morris', morrisActive], ['rival', rivalActive]] as const) {
      // The chain that promoted, walked back from its evaluate run (later cron ticks found nothing new).
      const runs = listRuns(h.store, { columnist: voice, limit: 100 });
      const chain = [runs.find((r) => r.job === 'evaluate')!];
      while (chain[0]!.parent_id !== null) chain.unshift(runs.find((r) => r.id === chain[0]!.parent_id)!);
      expect(chain.map((r) => `${r.job}:${r.status}`), voice).toEqual(['rescrape:succeeded', 'rebuild:succeeded', 'retrain:succeeded', 'evaluate:succeeded']);
      expect(chain[0]!.trigger).toBe('cron');
      expect(chain[3]!.message).toMatch(/^promoted: /);
      expect(active.columnist).toBe(voice);
      expect(datasetColumnist(h.store, active.dataset_id!)).toBe(voice);
    }
    expect(morrisActive.dataset_id).not.toBe(rivalActive.dataset_id);
    // The dashboard's view: each voice's own numbers, adapter and schedule.
    const res = await fetch(`${h.url}/api/columnists`, { headers: { authorization: 'Bearer test-admin-token' } });
    const { columnists: states } = (await res.json()) as { columnists: { name: string; ok: boolean; default: boolean; articles: number; latestDataset: string; activeAdapter: { id: string }; scheduled: { job: string }[] }[] };
    expect(states.map((c) => [c.name, c.ok, c.default, c.activeAdapter.id, c.latestDataset])).toEqual([
      ['morris', true, true, morrisActive.id, morrisActive.dataset_id],
      ['rival', true, false, rivalActive.id, rivalActive.dataset_id],
    ]);
    expect(states[1]!.articles).toBe(14);
    expect(states[0]!.articles).toBeGreaterThan(14);
    // Each voice has its own readers' pairs watch (DPO): its pairs train it.
    expect(states.map((c) => c.scheduled.map((x) => x.job))).toEqual([['dpo', 'rescrape'], ['dpo', 'rescrape']]);
    // One training at a time: the second began after the first had ended, and neither was skipped.
    const trainings = listRuns(h.store, { job: 'retrain', limit: 10 }).reverse();
    expect(trainings.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    expect(trainings[1]!.started_at >= trainings[0]!.ended_at!).toBe(true);
  }, 300_000);

  it("the gate compares a candidate only with its own columnist's active adapter", async () => {
    const rivalActive = h.registry.active('rival')!;
    const morrisActive = h.registry.active()!;
    const copy = path.join(root, 'models', 'adapters', 'rival-copy');
    fs.cpSync(rivalActive.path, copy, { recursive: true });
    h.store
      .prepare(`INSERT INTO adapters (id, base_model, dataset_id, path, status, metrics, columnist) VALUES ('rival-copy', ?, ?, ?, 'candidate', '{}', 'rival')`)
      .run(rivalActive.base_model, rivalActive.dataset_id, copy);
    const [run] = await (await h.control.start('evaluate', { trigger: 'test', input: { adapterId: 'rival-copy' } })).finished;
    expect(run!.status).toBe('succeeded');
    // The same weights as the rival's active adapter: no gain, so not promoted; measured against it.
    expect(run!.message).toMatch(new RegExp(`^not promoted: validation loss .* does not beat ${rivalActive.id}`));
    const ev = getAdapter(h.store, 'rival-copy').eval as { active: { adapterId: string } };
    expect(ev.active.adapterId).toBe(rivalActive.id);
    expect([h.registry.active()!.id, h.registry.active('rival')!.id]).toEqual([morrisActive.id, rivalActive.id]);
  }, 120_000);

  it('requests for both voices at once decode together, each equal to that adapter alone (greedy and seeded sampling)', async () => {
    const alone = { morris: await write('late trains'), rival: await write('late trains', 'rival') };
    expect(alone.morris.adapterId).toBe(h.registry.active()!.id);
    expect(alone.rival.adapterId).toBe(h.registry.active('rival')!.id);
    const greedy = await atOnce(() => [write('late trains'), write('late trains', 'rival')]);
    expect(greedy.results).toEqual([alone.morris, alone.rival]);
    // The native kernel keeps adapters in a pool beside the base weights: both voices in one batch.
    expect(h.service.status().decodeKernel).toMatch(/^native/);
    expect(greedy.most).toBe(2);

    // Eight steps barely move a random tiny model (its loss stays near uniform), so both voices'
    // greedy texts can be the same run of one near-tied token, and equal texts would not show a
    // mixed-up batch. A seeded draw at temperature 1 reads the whole distribution: the two
    // adapters' texts differ, and each must still be the same drawn alone or batched.
    const route = voiceRouteFromStore(getConfig(), h.store);
    const sampling = { temperature: 1, topK: 0, topP: 1, seed: 11, maxNewTokens: 24 };
    const sampled = (voice: 'morris' | 'rival') => doneOf(h.service.generate({ ...route(voice), topic: 'late trains', sampling }));
    const drawn = { morris: await sampled('morris'), rival: await sampled('rival') };
    expect([drawn.morris.adapterId, drawn.rival.adapterId]).toEqual([h.registry.active()!.id, h.registry.active('rival')!.id]);
    expect(drawn.morris.text).not.toBe(drawn.rival.text);
    const seeded = await atOnce(() => [sampled('morris'), sampled('rival')]);
    expect(seeded.results).toEqual([drawn.morris, drawn.rival]);
    expect(seeded.most).toBe(2);
  }, 120_000);

  it("Slack's /morris --as and Discord's columnist: option reach the voice's active adapter", async () => {
    const rivalActive = h.registry.active('rival')!;
    const ack = await postSigned(
      `${h.url.replace(/\/$/, '')}/slack/events`,
      new URLSearchParams(slashCommand(slack, { command: '/morris', text: '--as rival spectrum auctions', user_id: 'U1', channel_id: 'CVOICE' })).toString(),
      { secret: SECRET, contentType: 'application/x-www-form-urlencoded' },
    );
    expect(ack.status).toBe(200);
    const msg = await waitFor(() => slack.messages.find((m) => m.channel === 'CVOICE' && m.text.includes('not written by them')), 60_000);
    expect(msg.text).toContain('AI-generated in the style of a rival columnist');
    const token = discord.slashCommand({
      name: 'morris',
      options: [{ name: 'topic', type: 3, value: 'fibre broadband' }, { name: 'columnist', type: 3, value: 'rival' }],
      user: { id: '300000000000000003', username: 'reader' },
    });
    await waitFor(() => discord.messages.find((m) => m.interaction_token === token && m.content.includes('not written by them')), 60_000);
    const rows = h.store.prepare("SELECT platform, columnist, adapter_id, outcome FROM generations WHERE topic IN ('spectrum auctions', 'fibre broadband') ORDER BY platform").all();
    expect(rows).toEqual([
      { platform: 'discord', columnist: 'rival', adapter_id: rivalActive.id, outcome: 'ok' },
      { platform: 'slack', columnist: 'rival', adapter_id: rivalActive.id, outcome: 'ok' },
    ]);
  }, 120_000);
});
