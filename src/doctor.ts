/**
 * `morris doctor`: the facts a newcomer (or a bug report) needs about this host, gathered
 * without loading a model. Every check reports instead of throwing, so doctor always finishes.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.ts';
import { openStore, schemaVersion, latestSchemaVersion } from './store/db.ts';
import { checkDatabase, malformedError } from './store/health.ts';
import { backupDirFor, listBackups } from './store/backup.ts';
import { listProviders, providerCandidates } from './model/inference/runtime.ts';
import { baseModelLocation } from './model/checkpoint/base-model-location.ts';
import { NATIVE_ADDON_FILE, nativeAddon } from './model/inference/native-addon.ts';

export interface DoctorReport {
  node: { version: string; ok: boolean };
  providers: { name: string; usable: boolean; note: string }[];
  device: { configured: string; wouldUse: string };
  database: {
    path: string;
    schemaVersion: number | null;
    latest: number;
    error?: string;
    /** quick_check of the file: 'malformed' lists what it found. */
    health: { status: 'ok' | 'malformed' | 'missing'; problems: string[] };
    backups: { dir: string; count: number; latest: { file: string; at: string } | null };
  };
  bots: { slack: string; discord: string; backend: string };
  /** Who can reach the dashboard; ok false when its port is public and no admin token is set. */
  web: { ok: boolean; note: string };
  baseModel: { setting: string; folder: string; present: boolean; missing: string[] };
  /** Who runs single-token decode on the CPU: the native kernel (native/, morris_native.node) or the ONNX graph. */
  decodeKernel: {
    setting: Config['MORRIS_DECODE_KERNEL'];
    built: boolean;
    /** The instruction set the loaded kernel picked (MORRIS_NATIVE_ISA can force a lower one); null when it did not load. */
    isa: string | null;
    /** Why the kernel is unavailable (not built, load error); null when it loaded. */
    reason: string | null;
    /** What loadModel would pick for a model on the CPU: 'native-<isa>', 'onnx', or 'error' (MORRIS_DECODE_KERNEL=native without a kernel). */
    wouldUse: string;
    /** Linux's transparent huge page mode (always, madvise, never); the kernel asks for 2 MiB pages for its weights. null off Linux. */
    hugePages: string | null;
  };
}

export function collectDoctorReport(config: Config): DoctorReport {
  const [major] = process.versions.node.split('.').map(Number);
  const providers = listProviders().filter((p) => p.supported);
  let wouldUse = 'cpu';
  try {
    wouldUse = providerCandidates(config.MORRIS_DEVICE)[0] ?? 'cpu';
  } catch (e) {
    wouldUse = `invalid: ${(e as Error).message}`;
  }

  // Checked before opening: opening migrates, and a malformed file should be reported, not touched.
  const health = checkDatabase(config.dbPath);
  let backups: ReturnType<typeof listBackups> = [];
  try {
    backups = listBackups(config.dbPath);
  } catch {
    // An unreadable backups folder reads as "no backups", which the report then warns about.
  }
  const database: DoctorReport['database'] = {
    path: config.dbPath,
    schemaVersion: null,
    latest: latestSchemaVersion(),
    health: { status: health.status, problems: health.problems },
    backups: {
      dir: backupDirFor(config.dbPath),
      count: backups.length,
      latest: backups[0] ? { file: backups[0].file, at: backups[0].at.toISOString() } : null,
    },
  };
  if (health.status === 'malformed') {
    const err = malformedError(health);
    database.error = `${err.message} ${err.hint}`;
  } else {
    try {
      const db = openStore(config.dbPath);
      database.schemaVersion = schemaVersion(db);
      db.close();
    } catch (e) {
      database.error = (e as Error).message;
    }
  }

  const slack = !config.SLACK_BOT_TOKEN
    ? 'not configured (set SLACK_BOT_TOKEN)'
    : config.SLACK_APP_TOKEN
      ? 'configured (Socket Mode)'
      : config.SLACK_SIGNING_SECRET
        ? `configured (HTTP mode, POST /slack/events on port ${config.PORT})`
        : 'incomplete: set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)';
  const discord = !config.DISCORD_TOKEN
    ? 'not configured (set DISCORD_TOKEN)'
    : config.DISCORD_APPLICATION_ID
      ? 'configured'
      : 'configured, but DISCORD_APPLICATION_ID is missing (needed to register slash commands)';
  const backend = config.MORRIS_BACKEND === 'openai' ? `openai at ${config.MORRIS_OPENAI_BASE_URL ?? '(MORRIS_OPENAI_BASE_URL not set)'}` : 'local (in-process ONNX Runtime)';

  const web = webAccess(config);

  const folder = baseModelLocation(config.MORRIS_BASE_MODEL, config.MORRIS_MODELS_DIR);
  const missing = ['config.json', 'tokenizer.json', 'tokenizer_config.json'].filter((f) => !fs.existsSync(path.join(folder, f)));
  const hasWeights =
    fs.existsSync(path.join(folder, 'model.safetensors')) || fs.existsSync(path.join(folder, 'model.safetensors.index.json'));
  if (!hasWeights) missing.push('model.safetensors');

  const { addon, reason } = nativeAddon();
  const isa = addon ? addon.kernelInfo().isa : null;
  const setting = config.MORRIS_DECODE_KERNEL;
  const decodeKernel: DoctorReport['decodeKernel'] = {
    setting,
    built: fs.existsSync(NATIVE_ADDON_FILE),
    isa,
    reason: addon ? null : reason,
    wouldUse: setting === 'onnx' ? 'onnx' : isa ? `native-${isa}` : setting === 'native' ? 'error' : 'onnx',
    hugePages: transparentHugePages(),
  };

  return {
    node: { version: process.versions.node, ok: (major ?? 0) >= 20 },
    providers: providers.map((p) => ({ name: p.name, usable: p.usable, note: p.note })),
    device: { configured: config.MORRIS_DEVICE, wouldUse },
    database,
    bots: { slack, discord, backend },
    web,
    baseModel: { setting: config.MORRIS_BASE_MODEL, folder, present: missing.length === 0, missing },
    decodeKernel,
  };
}

export function formatDoctorReport(r: DoctorReport): string {
  const mark = (ok: boolean) => (ok ? 'ok  ' : 'warn');
  const lines = [
    `${mark(r.node.ok)} Node.js ${r.node.version}${r.node.ok ? '' : ' (Node 20 or newer is required)'}`,
    `ok   ONNX Runtime execution providers:`,
    ...r.providers.map((p) => `       ${p.usable ? '+' : '-'} ${p.name.padEnd(7)} ${p.note}`),
    `ok   device: ${r.device.configured} → would use ${r.device.wouldUse}`,
    r.database.error
      ? `warn database ${r.database.path}: ${r.database.error}`
      : `ok   database ${r.database.path} (schema version ${r.database.schemaVersion} of ${r.database.latest}; quick_check ${r.database.health.status})`,
    r.database.backups.latest
      ? `ok   backups: ${r.database.backups.count} in ${r.database.backups.dir}, latest ${path.basename(r.database.backups.latest.file)} (${r.database.backups.latest.at})`
      : `warn backups: none yet in ${r.database.backups.dir} (serve takes one daily; \`morris db backup\` takes one now)`,
    `ok   slack: ${r.bots.slack}`,
    `ok   discord: ${r.bots.discord}`,
    `ok   generation backend: ${r.bots.backend}`,
    `${mark(r.web.ok)} dashboard: ${r.web.note}`,
    r.baseModel.present
      ? `ok   base model ${r.baseModel.setting} present at ${r.baseModel.folder}`
      : `warn base model ${r.baseModel.setting} not present at ${r.baseModel.folder} (missing ${r.baseModel.missing.join(', ')}); ` +
        `it is pulled on first use, or run \`morris model pull\` / \`morris model init-tiny\``,
    formatDecodeKernel(r.decodeKernel),
  ];
  return lines.join('\n');
}

/** Where the dashboard listens and who may use it (see src/web/auth.ts). */
function webAccess(config: Config): DoctorReport['web'] {
  const own = config.MORRIS_DASHBOARD_PORT !== undefined;
  const host = own ? config.MORRIS_DASHBOARD_HOST : config.HOST;
  const where = `${host}:${own ? config.MORRIS_DASHBOARD_PORT : config.PORT}${own ? ' (its own listener; the public port answers only Slack events and /healthz)' : ''}`;
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host);
  if (config.MORRIS_ADMIN_TOKEN) return { ok: true, note: `${where}; sign in at /login or send the admin token as a bearer token` };
  if (loopback) return { ok: true, note: `${where}; no MORRIS_ADMIN_TOKEN, so it answers only on this machine` };
  return {
    ok: false,
    note: `${where} is reachable from other machines and MORRIS_ADMIN_TOKEN is not set: the dashboard answers only to clients on this machine; set MORRIS_ADMIN_TOKEN to sign in from elsewhere, or MORRIS_DASHBOARD_PORT to keep it on loopback`,
  };
}

/** The bracketed choice in /sys/kernel/mm/transparent_hugepage/enabled ("always [madvise] never"). */
function transparentHugePages(): string | null {
  try {
    return /\[(\w+)\]/.exec(fs.readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? null;
  } catch {
    return null;
  }
}

function formatDecodeKernel(k: DoctorReport['decodeKernel']): string {
  const setting = `MORRIS_DECODE_KERNEL=${k.setting}`;
  if (k.wouldUse === 'error') return `warn decode kernel: ${setting}, but ${k.reason}; loading a model will fail (set it to auto to fall back to ONNX Runtime)`;
  if (k.setting === 'onnx') return `ok   decode kernel: onnx (${setting}; ${k.isa ? `the native kernel (${k.isa}) is built but not used` : `native kernel unavailable: ${k.reason}`})`;
  if (k.isa && k.hugePages === 'never') {
    return `warn decode kernel: ${k.wouldUse} (${setting}), but transparent huge pages are off, so its weights sit on 4 KiB pages and decode runs about 15% slower (as root: echo madvise > /sys/kernel/mm/transparent_hugepage/enabled)`;
  }
  if (k.isa) return `ok   decode kernel: ${k.wouldUse} (${setting}; runs single-token decode on the CPU${k.hugePages ? `, weights on 2 MiB pages (huge pages: ${k.hugePages})` : ''})`;
  return `warn decode kernel: onnx (${setting}): ${k.reason}; decode on the CPU runs slower through ONNX Runtime`;
}
