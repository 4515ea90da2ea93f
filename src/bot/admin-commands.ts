/**
 * `/morris-admin <command>`: gated by the configured admin ids (Slack user ids; Discord user or
 * role ids), every use written to `audit_log` whether allowed or not, and carried out through the
 * injected `AdminActions` (src/jobs) — except `version`, which asks the TextGenerator.
 */
import { isMorrisError, MorrisError } from '../errors.ts';
import { childLog } from '../log.ts';
import { audit, type Store } from '../store/db.ts';
import { forgetPerson, formatCounts, parsePerson } from '../store/privacy.ts';
import { escapeSlack, type RenderPlatform } from './render.ts';
import type { AdminActions, Requester, TextGenerator } from './types.ts';
import { channelColumnist, setChannelColumnist, voiceOf, type VoiceDirectory } from './voices.ts';

const logger = childLog('bot-admin');

export const ADMIN_COMMANDS = [
  'status',
  'retrain',
  'rescrape',
  'rebuild',
  'adapters',
  'promote',
  'rollback',
  'cancel',
  'version',
  'forget',
  'default-columnist',
] as const;
export type AdminCommand = (typeof ADMIN_COMMANDS)[number];

/** How the commands that take arguments are written (the rest are bare words). */
const USAGE: Partial<Record<AdminCommand, string>> = {
  retrain: '`retrain [columnist]`',
  rescrape: '`rescrape [columnist]`',
  rebuild: '`rebuild [columnist]`',
  adapters: '`adapters [columnist]`',
  promote: '`promote <adapter>`',
  rollback: '`rollback [columnist]`',
  cancel: '`cancel <job>`',
  forget: '`forget <platform> <user-id>`',
  'default-columnist': '`default-columnist <name|none>`',
};

export interface AdminSettings {
  slackAdmins: readonly string[];
  /** Discord user ids or role ids. */
  discordAdmins: readonly string[];
  /** For `default-columnist`: the default voice's attribution and the other voices. */
  columnist?: string;
  voices?: VoiceDirectory;
}

export interface AdminDeps {
  store: Store;
  generator: TextGenerator;
  admin?: AdminActions;
  settings: AdminSettings;
}

export function isAdmin(requester: Requester, settings: AdminSettings): boolean {
  const { slackAdmins, discordAdmins } = settings;
  if (requester.platform === 'slack') return slackAdmins.includes(requester.userId);
  if (requester.platform === 'discord') {
    return discordAdmins.includes(requester.userId) || (requester.roleIds ?? []).some((r) => discordAdmins.includes(r));
  }
  return false;
}

/** Runs one admin command; returns platform-ready text. Every call is audited. */
export async function runAdminCommand(deps: AdminDeps, input: { requester: Requester; text: string }): Promise<string> {
  const { requester } = input;
  const platform: RenderPlatform = requester.platform === 'slack' ? 'slack' : 'discord';
  const [word = '', ...rest] = input.text.trim().split(/\s+/).filter(Boolean);
  const command = word.toLowerCase().slice(0, 40);
  const args = rest.join(' ').slice(0, 500);
  const allowed = isAdmin(requester, deps.settings);
  const record = (outcome: string) =>
    audit(deps.store, {
      platform: requester.platform,
      userId: requester.userId,
      command: command || '(none)',
      args: args || undefined,
      allowed,
      outcome,
    });
  if (!allowed) {
    record('refused: not an admin');
    logger.warn({ user: requester.userId, platform: requester.platform, command }, 'admin command refused');
    return "Sorry, admin commands are for Morris's admins only. This attempt was logged.";
  }
  if (!(ADMIN_COMMANDS as readonly string[]).includes(command)) {
    record('unknown command');
    return `Admin commands: ${ADMIN_COMMANDS.map((c) => USAGE[c] ?? `\`${c}\``).join(', ')}.`;
  }
  try {
    const out = await execute(deps, command as AdminCommand, args, requester);
    record('ok');
    return codeBlock(out, platform);
  } catch (e) {
    record(`failed: ${e instanceof Error ? e.message : String(e)}`.slice(0, 500));
    // A coded error is an expected answer (unknown job, bad id or platform); anything else is a bug.
    if (isMorrisError(e)) logger.warn({ code: e.code, reason: e.message, command, user: requester.userId }, 'admin command refused (bad input or state)');
    else logger.error({ err: e, command, user: requester.userId }, 'admin command failed');
    const msg = isMorrisError(e) ? e.message : 'something went wrong (see the log)';
    return `\`${command}\` failed: ${platform === 'slack' ? escapeSlack(msg) : msg}`;
  }
}

async function execute(deps: AdminDeps, command: AdminCommand, args: string, requester: Requester): Promise<string> {
  if (command === 'version') {
    const info = await deps.generator.info();
    return [
      `backend:    ${info.backend}`,
      `base model: ${info.baseModel ?? 'unknown'}`,
      `adapter:    ${info.adapterId ?? 'none (base model only)'}`,
      `dataset:    ${info.datasetId ?? 'unknown'}`,
      ...(info.details ? [info.details] : []),
    ].join('\n');
  }
  if (command === 'forget') {
    // Store work only (no job system), so it runs in any process that has the database.
    const [platform, userId] = args.split(/\s+/);
    if (!userId) throw new MorrisError('BAD_INPUT', '`forget` needs a platform and a user id, e.g. `forget slack U024BE7LH`.');
    const person = parsePerson(platform, userId);
    const c = forgetPerson(deps.store, person, { platform: requester.platform, userId: requester.userId, command: 'forget' });
    return `Deleted for ${person.platform} user ${person.userId}: ${formatCounts(c)}.`;
  }
  if (command === 'default-columnist') return defaultColumnist(deps, args.split(/\s+/)[0] ?? '', requester);
  const admin = deps.admin;
  if (!admin) throw new MorrisError('NOT_FOUND', 'Admin actions are not available in this process (run `morris serve`).');
  const actor = { platform: requester.platform, userId: requester.userId };
  const needArg = (what: string, example: string) => {
    if (!args) throw new MorrisError('BAD_INPUT', `\`${command}\` needs ${what}, e.g. \`${command} ${example}\`.`);
    return args.split(/\s+/)[0]!;
  };
  // The chain's commands and the registry's take a columnist (default: the default one).
  const voice = args.split(/\s+/)[0]?.toLowerCase() || undefined;
  switch (command) {
    case 'status':
      return admin.status(actor);
    case 'retrain':
      return voice ? admin.retrain(actor, voice) : admin.retrain(actor);
    case 'rescrape':
      return voice ? admin.rescrape(actor, voice) : admin.rescrape(actor);
    case 'rebuild':
      return voice ? admin.rebuild(actor, voice) : admin.rebuild(actor);
    case 'adapters':
      return voice ? admin.adapters(actor, voice) : admin.adapters(actor);
    case 'promote':
      return admin.promote(actor, needArg('an adapter id', 'a-20260101'));
    case 'rollback':
      return voice ? admin.rollback(actor, voice) : admin.rollback(actor);
    case 'cancel':
      return admin.cancel(actor, needArg('a job id', '42'));
  }
}

/**
 * `default-columnist NAME` (this channel's requests without `--as` go to NAME), `default-columnist
 * none` (back to the default columnist), or no argument (say which it is). Store work only.
 */
function defaultColumnist(deps: AdminDeps, arg: string, requester: Requester): string {
  const name = arg.toLowerCase();
  if (!name) return `This channel writes as ${channelColumnist(deps.store, requester) ?? 'the default columnist'}.`;
  if (name === 'none') {
    setChannelColumnist(deps.store, requester, null);
    return 'This channel writes as the default columnist again.';
  }
  // An unknown name throws UNKNOWN_COLUMNIST listing the known ones.
  const voice = voiceOf({ columnist: deps.settings.columnist ?? '', voices: deps.settings.voices }, { columnist: name });
  setChannelColumnist(deps.store, requester, voice.name);
  return `This channel now writes as ${voice.name} unless a request says --as NAME.`;
}

/** Plain text shown verbatim (monospace) on either platform. */
function codeBlock(text: string, platform: RenderPlatform): string {
  const body = text.replace(/```/g, "'''").trim() || '(no output)';
  return `\`\`\`\n${platform === 'slack' ? escapeSlack(body) : body}\n\`\`\``;
}
