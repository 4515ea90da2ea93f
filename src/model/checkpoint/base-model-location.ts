import path from 'node:path';
import fs from 'node:fs';

/**
 * Where the base model named by MORRIS_BASE_MODEL lives on disk: the setting itself when it is
 * a folder (or looks like a path), otherwise the Hub repo id's folder under the models dir
 * (`HuggingFaceTB/SmolLM2-360M-Instruct` → `models/HuggingFaceTB--SmolLM2-360M-Instruct`).
 */
export function baseModelLocation(setting: string, modelsDir: string): string {
  const looksLikePath = setting.startsWith('.') || setting.startsWith('/') || setting.split('/').length > 2;
  if (looksLikePath || fs.existsSync(setting)) return path.resolve(setting);
  return path.resolve(modelsDir, setting.replace('/', '--'));
}
