// Remembered between runs (on this machine only): theme, recent paths, per-product presets.
const KEY = "bluesphere-studio-settings";

/** What a product's packages were last made with (filled in when the product is chosen). */
export interface Preset {
  hardware: string;
  component: string;
  key: string;
  profile: "best" | "small";
  counter: number;
}

interface Saved {
  theme: "system" | "light" | "dark";
  fields: Record<string, string>;
  recent: Record<string, string[]>;
  presets: Record<string, Preset>;
}

/** Recent values kept per field. */
const RECENT = 8;

function load(): Saved {
  try {
    const raw = localStorage.getItem(KEY);
    if (raw) {
      const v = JSON.parse(raw) as Partial<Saved>;
      return { theme: v.theme ?? "system", fields: v.fields ?? {}, recent: v.recent ?? {}, presets: v.presets ?? {} };
    }
  } catch {
    // A damaged store starts afresh.
  }
  return { theme: "system", fields: {}, recent: {}, presets: {} };
}

export const settings = $state(load());

$effect.root(() => {
  $effect(() => {
    try {
      localStorage.setItem(KEY, JSON.stringify(settings));
    } catch {
      // Storage full or off: nothing to remember then.
    }
  });
});

/** A remembered field value (recent paths, last product...). */
export function remembered(name: string, fallback: string): string {
  return settings.fields[name] ?? fallback;
}

export function remember(name: string, value: string) {
  settings.fields[name] = value;
}

/** The recent values of a field, newest first. */
export function recent(field: string): string[] {
  return settings.recent[field] ?? [];
}

/** Put `value` first in a field's recent values. */
export function used(field: string, value: string) {
  const v = value.trim();
  if (!v) return;
  const list = (settings.recent[field] ?? []).filter((x) => x !== v);
  settings.recent[field] = [v, ...list].slice(0, RECENT);
}

/** A product's preset, if one was saved. */
export function preset(product: string): Preset | undefined {
  return settings.presets[product.trim()];
}

/** Save what `product`'s package was made with. */
export function savePreset(product: string, p: Preset) {
  const name = product.trim();
  if (name) settings.presets[name] = { ...p };
}

/** The products that have a preset. */
export function presetNames(): string[] {
  return Object.keys(settings.presets).sort();
}
