/**
 * The instruction a person's topic becomes. Training examples use this phrasing (among others)
 * and generation uses exactly this one, so the model is asked the way it was taught.
 */
export function columnInstruction(topic: string): string {
  return `Write a column about ${topic.trim().replace(/[.!?…]+$/u, '')}.`;
}
