/**
 * The checks config.ts cannot make from the values alone: what they name must exist. The training
 * config file must be there and hold known settings, every MORRIS_SOURCES profile must load with
 * what it needs (its base URL), and the address `serve` listens on must resolve to an interface of
 * this machine. Run at the start of a command, so a typo stops it there, with the key named, and
 * not at the first rescrape or training hours later. Every problem found is reported at once.
 */
import dns from 'node:dns/promises';
import fs from 'node:fs';
import net from 'node:net';
import { configInvalid, type Config, type ConfigProblem } from './config.ts';
import { isMorrisError } from './errors.ts';
import { resolveTrainConfig } from './model/train/config.ts';
import path from 'node:path';
import { listProfiles, loadProfile } from './pipeline/crawl/profile.ts';
import { DEFAULT_COLUMNIST_NAME } from './paths.ts';

/** How long a host name may take to resolve before `serve` gives up on it. */
export const HOST_LOOKUP_TIMEOUT_MS = 5000;

/** MORRIS_TRAIN_CONFIG: an existing JSON object whose keys and values training accepts. */
export function checkTrainConfigFile(file: string | undefined): ConfigProblem | null {
  if (!file) return null;
  const problem = (expected: string): ConfigProblem => ({ key: 'MORRIS_TRAIN_CONFIG', value: file, expected });
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return problem('expected an existing JSON file of training settings; there is no such file');
    return problem(`expected a readable JSON file of training settings (${(e as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return problem('expected a JSON object of training settings');
  try {
    resolveTrainConfig(raw as Record<string, unknown>);
  } catch (e) {
    if (!isMorrisError(e)) throw e;
    return problem(`expected valid training settings: ${e.message.replace(/^Invalid training settings:\s*/, '').replace(/\s*\n\s*/g, '; ')}`);
  }
  return null;
}

/**
 * MORRIS_SOURCES: each `name` or `name=baseUrl` names a profile in the default columnist's sources/ that loads with
 * the base URL given (or its own).
 */
export function checkSources(entries: readonly string[], dir?: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const value = entries.join(',');
  for (const entry of entries) {
    const i = entry.indexOf('=');
    const name = i < 0 ? entry : entry.slice(0, i);
    const baseUrl = i < 0 ? undefined : entry.slice(i + 1);
    const known = listProfiles(dir);
    if (!known.includes(name)) {
      problems.push({ key: 'MORRIS_SOURCES', value, expected: `expected names of source profiles in data/columnists/morris/sources; there is no "${name}" (known: ${known.join(', ') || 'none'})` });
      continue;
    }
    try {
      loadProfile(name, { dir, baseUrl });
    } catch (e) {
      if (!isMorrisError(e)) throw e;
      const expected = e.message.includes('needs a base URL')
        ? `profile "${name}" is written for a base URL: give it as ${name}=http(s)://host:port`
        : `profile "${name}" does not load: ${e.message.replace(/\s*\n\s*/g, '; ')}`;
      problems.push({ key: 'MORRIS_SOURCES', value, expected });
    }
  }
  return problems;
}

/**
 * MORRIS_COLUMNISTS_DIR must hold the default columnist's folder: every request and job that names
 * no voice is its, so without it nothing could run.
 */
export function checkColumnistsDir(dir: string): ConfigProblem | null {
  if (fs.existsSync(path.join(dir, DEFAULT_COLUMNIST_NAME, 'columnist.json'))) return null;
  return { key: 'MORRIS_COLUMNISTS_DIR', value: dir, expected: `expected a folder holding the default columnist's folder ${DEFAULT_COLUMNIST_NAME}/ (with its columnist.json); copy the repo's data/columnists/${DEFAULT_COLUMNIST_NAME} there` };
}

type ReferencedConfig = Pick<Config, 'MORRIS_TRAIN_CONFIG' | 'MORRIS_SOURCES' | 'MORRIS_COLUMNISTS_DIR'>;

/** Everything a command checks before it starts (serve adds the listen address). */
export function checkConfigReferences(config: ReferencedConfig): ConfigProblem[] {
  const trainConfig = checkTrainConfigFile(config.MORRIS_TRAIN_CONFIG);
  const columnists = checkColumnistsDir(config.MORRIS_COLUMNISTS_DIR);
  // MORRIS_SOURCES names the default columnist's profiles, in its folder.
  const sources = columnists ? [] : checkSources(config.MORRIS_SOURCES, path.join(config.MORRIS_COLUMNISTS_DIR, DEFAULT_COLUMNIST_NAME, 'sources'));
  return [...(trainConfig ? [trainConfig] : []), ...(columnists ? [columnists] : []), ...sources];
}

/** Throws one CONFIG_INVALID naming every key that names something missing. */
export function assertConfigReferences(config: ReferencedConfig): void {
  const problems = checkConfigReferences(config);
  if (problems.length) throw configInvalid(problems);
}

/**
 * The listen address resolves and this machine can bind it: a trial listen on a free port (0)
 * tells "not an address of this machine" apart from "port in use", which the real listen reports.
 * `key` is what the person set: HOST, or serve's --host flag.
 */
export async function checkListenHost(host: string, key = 'HOST'): Promise<ConfigProblem | null> {
  const problem = (expected: string): ConfigProblem => ({ key, value: host, expected });
  const h = host.trim();
  if (!h) return problem('expected an IP address or host name to listen on, e.g. 0.0.0.0 or 127.0.0.1');
  // Four dotted numbers that are not an IPv4 address (999.1.1.1) would otherwise go to DNS as a name.
  if (/^\d+(\.\d+){3}$/.test(h) && !net.isIPv4(h)) return problem('expected an IPv4 address (four numbers from 0 to 255) or a host name');
  let address = h;
  if (!net.isIP(h)) {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${HOST_LOOKUP_TIMEOUT_MS / 1000} s`)), HOST_LOOKUP_TIMEOUT_MS);
      });
      address = (await Promise.race([dns.lookup(h), timeout])).address;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      return problem(`expected an address or a host name this machine resolves (${code ?? (e as Error).message})`);
    } finally {
      clearTimeout(timer);
    }
  }
  const bindError = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const server = net.createServer();
    server.once('error', (e) => resolve(e));
    server.listen({ host: address, port: 0, exclusive: true }, () => server.close(() => resolve(null)));
  });
  if (!bindError) return null;
  return problem(
    bindError.code === 'EADDRNOTAVAIL'
      ? `expected an address of one of this machine's interfaces; ${address} is not one (0.0.0.0 listens on all)`
      : `expected an address this process can listen on (${bindError.code ?? bindError.message} on ${address})`,
  );
}

/** `serve`'s start: the references plus the listen address; one CONFIG_INVALID for everything. */
export async function assertServeConfig(
  config: ReferencedConfig & Pick<Config, 'HOST'>,
  listen: { host?: string } = {},
): Promise<void> {
  const problems = checkConfigReferences(config);
  const host = await checkListenHost(listen.host ?? config.HOST, listen.host !== undefined ? '--host' : 'HOST');
  if (host) problems.push(host);
  if (problems.length) throw configInvalid(problems);
}
