// Every CLI area, in the order `morris --help` lists them.
export * as demo from './demo.ts';
export * as serve from './serve.ts';
export * as pipeline from './pipeline.ts';
export * as train from './train.ts';
export * as model from './model.ts';
export * as adapters from './adapters.ts';
export * as jobs from './jobs.ts';
export * as bots from './bots.ts';
export * as doctor from './doctor.ts';
