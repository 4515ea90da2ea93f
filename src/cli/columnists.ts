/**
 * `morris columnists list|show|add|check`: the voices as data (data/columnists/<name>/). Wiring
 * only: loading, checking and creating folders is src/columnists/.
 */
import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { addColumnist, loadAllColumnists, resolveColumnist, type Columnist } from '../columnists/folder.ts';
import { checkAllColumnists, checkColumnist } from '../columnists/check.ts';
import { getActiveAdapter } from '../store/adapters.ts';
import { okArticleCount } from '../store/articles.ts';
import { latestDatasetId } from '../store/datasets.ts';
import type { Store } from '../store/db.ts';

/** What a voice has in the store: the numbers `list` and `show` print. */
function storeState(store: Store, name: string) {
  return { articles: okArticleCount(store, name), latestDataset: latestDatasetId(store, name) ?? null, activeAdapter: getActiveAdapter(store, name)?.id ?? null };
}

function describe(c: Columnist) {
  return {
    name: c.name,
    displayName: c.displayName,
    attribution: c.attribution,
    default: c.isDefault,
    description: c.description,
    folder: c.dir,
    systemPrompt: c.systemPromptFile,
    extraExamples: c.extrasFile,
    sources: c.sourcesDir,
    settings: c.settings,
  };
}

export function register(program: Command, ctx: CliContext): void {
  const columnists = program.command('columnists').description('The voices Morris writes in: list, show, add, check');

  columnists
    .command('list')
    .description('Every columnist folder, its active adapter and counts (broken folders say why)')
    .option('--json', 'JSON output')
    .action((o: { json?: boolean }) => {
      const { columnists: all, broken } = loadAllColumnists(ctx.config());
      const store = ctx.store();
      const rows = all.map((c) => ({ name: c.name, displayName: c.displayName, default: c.isDefault, ...storeState(store, c.name) }));
      if (o.json) return console.log(JSON.stringify({ columnists: rows, broken: broken.map((b) => ({ name: b.name, error: b.error.message })) }, null, 2));
      for (const r of rows) {
        console.log(`${r.default ? '*' : ' '} ${r.name.padEnd(20)} ${r.displayName.padEnd(24)} articles ${String(r.articles).padStart(5)}  dataset ${r.latestDataset ?? '—'}  adapter ${r.activeAdapter ?? 'base model'}`);
      }
      for (const b of broken) console.log(`! ${b.name.padEnd(20)} does not load: ${b.error.message.split('\n')[0]}`);
      console.log('(* = default; `morris columnists check` validates every file)');
    });

  columnists
    .command('show <name>')
    .description("One columnist: its files, effective settings and what it has in the store")
    .action((name: string) => {
      const c = resolveColumnist(name, ctx.config());
      console.log(JSON.stringify({ ...describe(c), ...storeState(ctx.store(), c.name), sourceProfiles: checkColumnist(c.name, ctx.config()).sources }, null, 2));
    });

  columnists
    .command('add <name>')
    .description('Create data/columnists/<name>/ to fill in: settings, an empty style guide, a sources folder')
    .option('--display-name <text>', 'how lists and the bots show it (default: the name)')
    .option('--attribution <text>', 'who "AI-generated in the style of …" names (default: the display name)')
    .action((name: string, o: { displayName?: string; attribution?: string }) => {
      const dir = addColumnist(name, ctx.config(), o);
      console.log(`Created ${dir}.\nNext: write ${dir}/system-prompt.md (the style guide), add source profiles to ${dir}/sources/, then \`morris columnists check\`.`);
    });

  columnists
    .command('check')
    .description('Validate every columnist folder (settings, style guide, extra examples, source profiles); exit 1 if one is broken')
    .option('--json', 'JSON output')
    .action((o: { json?: boolean }) => {
      const checks = checkAllColumnists(ctx.config());
      if (o.json) console.log(JSON.stringify(checks, null, 2));
      else {
        for (const c of checks) {
          console.log(c.ok ? `ok      ${c.name} (${c.sources.length} source profile${c.sources.length === 1 ? '' : 's'})` : `BROKEN  ${c.name}`);
          for (const p of c.problems) console.log(p.split('\n').map((l) => `        ${l.trim()}`).join('\n'));
        }
        if (!checks.length) console.log(`No columnist folders in ${ctx.config().MORRIS_COLUMNISTS_DIR}.`);
      }
      if (checks.some((c) => !c.ok)) process.exitCode = 1;
    });
}
