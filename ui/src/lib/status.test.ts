import { describe, expect, it } from "vitest";
import { begin, end, onEvent, status } from "./status.svelte";

describe("status bar state", () => {
  it("follows a job's events and ends with its result", () => {
    begin("Pushing");
    expect(status.running).toBe(true);
    onEvent({ event: "stage", name: "diff", component: 0, of: 1 });
    expect(status.stage).toBe("diff");
    onEvent({ event: "bytes", done: 512, total: 2048 });
    expect([status.done, status.total]).toEqual([512, 2048]);
    onEvent({ event: "push", stage: "data", acked: 900, total: 1186, bytes_per_sec: 11468.8 });
    expect([status.stage, status.done, status.total]).toEqual(["data", 900, 1186]);
    onEvent({ event: "warning", message: "slow link" });
    expect(status.log.at(-1)?.text).toBe("warning: slow link");
    end("Pushed");
    expect(status.running).toBe(false);
    expect(status.last).toBe("Pushed");
  });
});
