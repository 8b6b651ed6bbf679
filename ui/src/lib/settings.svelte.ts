// Remembered between runs (on this machine only): theme, recent paths, per-product presets.
const KEY = "bluesphere-studio-settings";

interface Saved {
  theme: "system" | "light" | "dark";
  fields: Record<string, string>;
}

function load(): Saved {
  try {
    const raw = localStorage.getItem(KEY);
    if (raw) {
      const v = JSON.parse(raw) as Partial<Saved>;
      return { theme: v.theme ?? "system", fields: v.fields ?? {} };
    }
  } catch {
    // A damaged store starts afresh.
  }
  return { theme: "system", fields: {} };
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
