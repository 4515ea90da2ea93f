/**
 * The text the tiny model's tokenizer is trained on: an embedded paragraph (always present, and
 * large enough on its own to learn the whole vocabulary) followed by the hand-kept style files
 * and sample articles under data/ when they exist, read in sorted order so the result depends
 * only on their content.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Corpus cap: enough for ~1k merges, small enough that training stays well under a second. */
const MAX_CORPUS_CHARS = 200_000;
const TEXT_FILE = /\.(md|txt|html?|json|jsonl)$/i;

export const EMBEDDED_CORPUS = `The morning train was late again, and nobody on the platform seemed surprised. We have
learned to expect less, and that is the real story of the week: not the delay itself, but how
quietly we have come to accept it. I remember when a late train was an event, something you
told your family about over dinner. Now it is simply the weather of public life.

Consider the council's latest plan for the high street. It promises "vibrant spaces" and
"community hubs", words that sound generous until you ask what they mean. A bench is a bench.
A library is a library. When officials reach for grander language, it is usually because the
plain thing they are offering has become smaller than it used to be.

I do not want to sound like a man shouting at the clouds. Some things are better than they were.
The bakery on Mill Lane still opens at six; the bread is still warm; the woman behind the
counter still remembers that I take my coffee black, with nothing in it but patience. Small
kindnesses are the mortar of a town. Take them away and the bricks stand for a while, looking
solid, until the first hard winter.

So here is my modest proposal, offered with the confidence of someone who has been wrong
before: measure what matters. Count the benches, the open doors, the buses that arrive when the
timetable says they will. Publish the numbers every month. Let us argue about facts rather than
feelings, and then, when the facts improve, let us allow ourselves to feel a little better too.

Readers write to ask why I keep returning to trains, to bread, to libraries. The answer is simple.
These are the places where a country meets itself. Politics happens in speeches, but life happens
in queues, in waiting rooms, on wet platforms at 7.42 in the morning. If you want to know how a
nation is doing, do not read the budget. Stand at the station and watch the faces.

Numbers help: 12 minutes late on Monday, 18 on Tuesday, 31 on Thursday. Prices too - a loaf at
2.40, a return ticket at 14.75, a cup of tea that somehow costs 3.10. None of it is a scandal on
its own. Together, it is a mood. And moods, as every editor knows, are what decide elections.

Still, I am an optimist by temperament if not by evidence. The children who ride the 8.05 to
school are louder and funnier than we ever were. They will inherit our late trains and our
shrinking libraries, and I suspect they will fix both, mostly by refusing to accept our excuses.
Good for them. We should have done the same.
`;

function collectFiles(dir: string, out: string[]): void {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) collectFiles(p, out);
    else if (TEXT_FILE.test(name)) out.push(p);
  }
}

/** Strips markup so HTML articles contribute their words, not their tags. */
function plainText(raw: string, file: string): string {
  return /\.html?$/i.test(file) ? raw.replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/gi, ' ').replace(/<[^>]+>/g, ' ') : raw;
}

/** Embedded paragraph + text files found under `dataDirs` (a file stands for itself; missing ones are skipped). */
export function buildCorpus(dataDirs: readonly string[]): string {
  let text = EMBEDDED_CORPUS;
  for (const dir of dataDirs) {
    if (!existsSync(dir)) continue;
    const files: string[] = [];
    if (statSync(dir).isDirectory()) collectFiles(dir, files);
    else files.push(dir);
    for (const f of files) {
      if (text.length >= MAX_CORPUS_CHARS) break;
      text += '\n' + plainText(readFileSync(f, 'utf8'), f);
    }
  }
  return text.slice(0, MAX_CORPUS_CHARS);
}
