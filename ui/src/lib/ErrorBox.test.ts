import { describe, expect, it } from "vitest";
import { render, screen } from "@testing-library/svelte";
import ErrorBox from "./ErrorBox.svelte";

describe("ErrorBox", () => {
  it("says what happened, why, what to do and what the device runs", () => {
    render(ErrorBox, {
      props: {
        title: "The update was not installed",
        error: { kind: "wrong-base", message: "the delta was made for another base image", hint: "use the image the device runs now" },
        state: "The device still runs main 1.1.0.",
      },
    });
    const alert = screen.getByRole("alert");
    expect(alert.dataset.kind).toBe("wrong-base");
    expect(alert.textContent).toContain("The update was not installed");
    expect(alert.textContent).toContain("another base image");
    expect(alert.textContent).toContain("What to do: use the image the device runs now");
    expect(alert.textContent).toContain("still runs main 1.1.0");
  });
});
