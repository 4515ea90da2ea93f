import { getConfig, type Config } from '../config.ts';
import { assertConfigReferences } from '../config-check.ts';
import { openStore, type Store } from '../store/db.ts';

/**
 * What every CLI command receives. Config and store open lazily so `--help` works even with a
 * broken config, and commands that need neither (e.g. `model init-tiny`) never touch them.
 */
export interface CliContext {
  config(): Config;
  store(): Store;
  /** Closes what was opened; called once by the CLI's top-level handler. */
  close(): void;
}

export function createCliContext(): CliContext {
  let store: Store | undefined;
  let checked = false;
  return {
    config() {
      const c = getConfig();
      // Once per command: the files and profiles the config names exist (see config-check.ts).
      if (!checked) {
        assertConfigReferences(c);
        checked = true;
      }
      return c;
    },
    store() {
      store ??= openStore(getConfig().dbPath);
      return store;
    },
    close() {
      store?.close();
      store = undefined;
    },
  };
}
