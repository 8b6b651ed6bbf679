import { describe, expect, it } from "vitest";
import { preset, presetNames, recent, savePreset, used } from "./settings.svelte";

describe("settings", () => {
  it("keeps the last eight paths per field, newest first, without repeats", () => {
    for (let i = 0; i < 10; i++) used("pkg-key", `/keys/k${i}.pem`);
    used("pkg-key", "/keys/k5.pem");
    used("pkg-key", "  ");
    const r = recent("pkg-key");
    expect(r.length).toBe(8);
    expect(r[0]).toBe("/keys/k5.pem");
    expect(r.filter((x) => x === "/keys/k5.pem").length).toBe(1);
    expect(r).not.toContain("/keys/k0.pem");
    expect(recent("other")).toEqual([]);
  });
  it("remembers per-product presets", () => {
    expect(preset("pump")).toBeUndefined();
    savePreset(" pump ", { hardware: "rev3", component: "main", key: "/k/pump.pem", profile: "small", counter: 4 });
    expect(preset("pump")?.profile).toBe("small");
    expect(preset("pump")?.counter).toBe(4);
    expect(presetNames()).toContain("pump");
  });
});
