// Every CLI area, in the order `morris --help` lists them.
import type { Command } from 'commander';
import type { CliContext } from './context.ts';
import * as demo from './demo.ts';
import * as serve from './serve.ts';
import * as columnists from './columnists.ts';
import * as pipeline from './pipeline.ts';
import * as train from './train.ts';
import * as model from './model.ts';
import * as adapters from './adapters.ts';
import * as status from './status.ts';
import * as jobs from './jobs.ts';
import * as bots from './bots.ts';
import * as feedback from './feedback.ts';
import * as privacy from './privacy.ts';
import * as doctor from './doctor.ts';
import * as db from './db.ts';

export const areas: ReadonlyArray<{ register(program: Command, ctx: CliContext): void }> = [
  demo,
  serve,
  columnists,
  pipeline,
  train,
  model,
  adapters,
  status,
  jobs,
  bots,
  feedback,
  privacy,
  doctor,
  db,
];
