/**
 * A scrape in a child process, for the crashed-run test: `node --import tsx scrape-child.ts DB URL`
 * starts a scrape of URL's /list into DB and is killed by the test while the listing hangs.
 */
import { openStore } from '../../src/store/db.ts';
import { parseProfile } from '../../src/pipeline/crawl/profile.ts';
import { scrapeSource } from '../../src/pipeline/crawl/scrape.ts';

const [dbPath, baseUrl] = process.argv.slice(2);
const store = openStore(dbPath);
const profile = parseProfile({ name: 'doomed', listings: [{ url: '{{baseUrl}}/list' }] }, { baseUrl });
await scrapeSource(store, profile, {
  fetch: { userAgent: 'MorrisBot/test', rateLimitRps: 100, hostConcurrency: 1, timeoutMs: 600_000, retries: 0, maxBytes: 100_000 },
});
