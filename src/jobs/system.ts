/**
 * The job system as one object: registry, runner with the real handlers, and the control that
 * starts chains. `morris serve` builds it with a hook that hot-swaps the generation service; the
 * CLI builds it without one (a serve process running elsewhere follows the store by itself).
 */
import type { Config } from '../config.ts';
import type { Store } from '../store/db.ts';
import { resolveBaseModel } from '../model/checkpoint/hub.ts';
import { JobControl } from './control.ts';
import { createJobHandlers, sourcesFromConfig, type JobEnv, type SourceSpec } from './handlers.ts';
import { AdapterRegistry, type ActiveChangeHook } from './registry.ts';
import { JobRunner } from './runner.ts';
import { scheduleFromConfig, type ScheduleSpec } from './scheduler.ts';
import { TrainingQueue } from './training-queue.ts';

export interface JobSystem {
  registry: AdapterRegistry;
  runner: JobRunner;
  control: JobControl;
  spec: ScheduleSpec;
}

export function buildJobSystem(opts: {
  config: Config;
  store: Store;
  onActiveChange?: ActiveChangeHook;
  sources?: SourceSpec[];
  trainOverrides?: Record<string, unknown>;
  style?: JobEnv['style'];
  /** Who holds the host's training turn while this process trains ("morris serve"), for whoever waits. */
  command?: string;
}): JobSystem {
  const { config, store } = opts;
  const registry = new AdapterRegistry(store, opts.onActiveChange);
  const runner = new JobRunner(
    store,
    createJobHandlers({
      config,
      store,
      registry,
      sources: opts.sources ?? sourcesFromConfig(config),
      baseModelDir: () => resolveBaseModel(config),
      trainOverrides: opts.trainOverrides,
      style: opts.style,
    }),
  );
  // One line for training shared by cron chains and started ones (CLI, dashboard, admin commands),
  // and one turn on the host shared with every other process on this store.
  const spec: ScheduleSpec = { ...scheduleFromConfig(config), trainingQueue: new TrainingQueue({ store, command: opts.command ?? 'morris' }) };
  return { registry, runner, control: new JobControl(runner, spec), spec };
}
