/**
 * `morris adapters import DIR` and `morris adapters export ID|active --out DIR`: PEFT adapters to
 * and from other tools (vLLM serves an export with `--lora-modules`; Axolotl, TRL or PEFT train
 * what is imported). Wiring only: the checks are in jobs/adapter-transfer.ts, and an import runs
 * the same `evaluate` job (the promotion gate) as an adapter trained here.
 */
import path from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import { COLUMNIST_FLAG, COLUMNIST_FLAG_HELP } from './options.ts';
import { resolveColumnist } from '../columnists/folder.ts';

export function registerTransfer(adapters: Command, ctx: CliContext): void {
  adapters
    .command('import <dir>')
    .description('Register a PEFT LoRA adapter trained elsewhere (checked against the base model), then run the evaluation gate on it')
    .option('--no-evaluate', 'register it as a candidate only; `morris jobs run evaluate --adapter ID` later')
    .option(COLUMNIST_FLAG, 'the voice it joins, whose active adapter the gate compares it with (default: morris)')
    .action(async (dir: string, o: { evaluate: boolean; columnist?: string }) => {
      const { importAdapter } = await import('../jobs/adapter-transfer.ts');
      const { resolveBaseModel } = await import('../model/checkpoint/hub.ts');
      const config = ctx.config();
      const store = ctx.store();
      const voice = resolveColumnist(o.columnist, config).name;
      const baseDir = await resolveBaseModel(config);
      const imported = importAdapter(store, dir, { setting: config.MORRIS_BASE_MODEL, dir: baseDir }, path.resolve(config.MORRIS_MODELS_DIR, 'adapters'), undefined, voice);
      const a = imported.adapter;
      console.log(`Imported ${imported.id} (LoRA r ${a.r}, alpha ${a.alpha}, ${a.targetModules.join(', ')}) as a candidate${o.columnist ? ` of ${voice}` : ''}.`);
      if (!o.evaluate) return;
      const { buildJobSystem } = await import('../jobs/system.ts');
      const sys = buildJobSystem({ config, store });
      sys.runner.events.on('event', (e) => {
        if (e.type === 'log') process.stderr.write(`[${e.job} #${e.runId}] ${e.line}\n`);
      });
      const started = await sys.control.start('evaluate', { trigger: 'cli', input: { adapterId: imported.id }, chain: false, columnist: voice });
      if (!started.started) {
        console.log(`Not evaluated now: ${started.run.message}. Run \`morris jobs run evaluate --adapter ${imported.id}\` later.`);
        process.exitCode = 3;
        return;
      }
      const [run] = await started.finished;
      const summary = (run?.result as { summary?: string } | undefined)?.summary;
      console.log(run?.status === 'succeeded' ? `Evaluation: ${summary}` : `Evaluation ${run?.status ?? 'did not run'}: ${run?.error ?? ''}`);
      if (run?.status !== 'succeeded') process.exitCode = 1;
    });

  adapters
    .command('export <id>')
    .description('Write an adapter (an id, or `active`) as a PEFT folder that vLLM, PEFT or transformers load')
    .requiredOption('--out <dir>', 'the folder to write (created)')
    .option('--name <name>', "the LoRA module name to print for vLLM (default: the voice's openaiModel, else its name)")
    .option(COLUMNIST_FLAG, 'with `active`: whose active adapter (default: morris)')
    .action(async (ref: string, o: { out: string; name?: string; columnist?: string }) => {
      const { adapterToExport, exportAdapter } = await import('../jobs/adapter-transfer.ts');
      const config = ctx.config();
      const voice = resolveColumnist(o.columnist, config);
      const row = adapterToExport(ctx.store(), ref, voice.name);
      const name = o.name ?? voice.openaiModel ?? voice.name;
      const { out, rank } = exportAdapter(row, o.out);
      console.log(`Wrote ${row.id} to ${out}.`);
      // vLLM's ranks come in steps (8, 16, 32, 64, …); 16 is its default.
      const maxRank = [8, 16, 32, 64, 128, 256].find((r) => r >= rank) ?? rank;
      console.log(`Serve it with vLLM: vllm serve ${config.MORRIS_BASE_MODEL} --enable-lora --max-lora-rank ${maxRank} --lora-modules ${name}=${out}`);
      // The default voice may take its module name from the process config; the others from their folder.
      if (voice.isDefault) console.log(`then point Morris at it: MORRIS_BACKEND=openai MORRIS_OPENAI_MODEL=${name}`);
      else console.log(`then point Morris at it: MORRIS_BACKEND=openai, and "openaiModel": "${name}" in ${voice.name}'s columnist.json`);
    });
}
