// Quiet logs in tests: only warnings and errors reach the output (set MORRIS_TEST_LOG=debug to see more).
import { setLogLevel } from '../src/log.ts';

setLogLevel(process.env.MORRIS_TEST_LOG ?? 'warn');
