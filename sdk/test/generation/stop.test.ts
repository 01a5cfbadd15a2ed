/**
 * StopMatcher: stop strings found across streamed pieces, held-back partial matches released when they turn
 * out not to be stops, several stop strings, stop ids (with EOS merged in), unicode, and the `stop` option's
 * validation. A randomized check compares the emitted stream with a direct reference on the whole text.
 */
import { describe, expect, it } from "vitest";
import { Rng } from "../../src/generation/rng.js";
import { GenerationOptionError, parseStop } from "../../src/generation/sampling-options.js";
import { StopMatcher, type StopStep } from "../../src/generation/stop.js";

function feed(m: StopMatcher, pieces: readonly (string | [string, number])[]): StopStep[] {
  const out: StopStep[] = [];
  for (const p of pieces) {
    const step = typeof p === "string" ? m.push(p) : m.push(p[0], p[1]);
    out.push(step);
    if (step.done) break;
  }
  return out;
}

const texts = (steps: readonly StopStep[]): string[] => steps.map((s) => s.text);
const matcher = (stop: string | (string | number)[], eos: number[] = []): StopMatcher => StopMatcher.fromOption(stop, eos);

describe("StopMatcher: stop strings", () => {
  it("stops inside one piece and does not emit the stop string", () => {
    const steps = feed(matcher("STOP"), ["Hello STOP world"]);
    expect(steps).toEqual([{ text: "Hello ", done: true, reason: "stop_string", stop: "STOP" }]);
  });

  it("finds a stop string spanning pieces, holding back its beginning meanwhile", () => {
    const m = matcher(["STOP"]);
    const steps = feed(m, ["Hel", "lo ST", "O", "P and more"]);
    expect(texts(steps)).toEqual(["Hel", "lo ", "", ""]);
    expect(steps.at(-1)).toMatchObject({ done: true, reason: "stop_string", stop: "STOP" });
    expect(m.done).toBe(true);
    expect(() => m.push("x")).toThrow(/already stopped/);
  });

  it("releases held-back text as soon as it can no longer become a stop string", () => {
    const m = matcher("STOP");
    expect(texts(feed(m, ["ab S", "T"]))).toEqual(["ab ", ""]);
    expect(m.pending).toBe("ST");
    expect(m.push("x")).toEqual({ text: "STx", done: false, reason: undefined, stop: undefined });
    // A held suffix can shrink to a shorter one that is still a prefix: "STS" → emit "ST", keep "S".
    expect(texts(feed(m, [" ST", "S"]))).toEqual([" ", "ST"]);
    expect(m.pending).toBe("S");
    expect(m.flush()).toBe("S"); // the sequence ended otherwise: held text is released
    expect(m.done).toBe(true);
  });

  it("stops at the earliest of several stop strings", () => {
    expect(feed(matcher(["\n\n", "END", "Q"]), ["a END b\n\nQ"])[0]).toMatchObject({ text: "a ", stop: "END" });
    expect(feed(matcher(["END", "\n\n"]), ["x\n", "\nEND"]).at(-1)).toMatchObject({ text: "", stop: "\n\n" });
    // Overlapping stops: "bc" completes first, inside the held-back beginning of "abcd".
    const m = matcher(["abcd", "bc"]);
    expect(texts(feed(m, ["xab", "c"]))).toEqual(["x", "a"]);
    // The longest held suffix wins: "xab" holds "ab" (a prefix of "abcd"), not only "b" (of "bc").
    expect(matcher(["abcd", "bc"]).push("xab").text).toBe("x");
  });

  it("treats pieces that are empty or the whole stop string alike", () => {
    expect(texts(feed(matcher("<|end|>"), ["", "<|", "", "end", "|>"]))).toEqual(["", "", "", "", ""]);
    expect(feed(matcher("<|end|>"), ["<|end|>"])[0]).toMatchObject({ text: "", done: true });
  });
});

describe("StopMatcher: stop ids", () => {
  it("ends at a stop id without emitting its piece, releasing the held text", () => {
    const m = matcher(["STOP", 7]);
    expect(m.push("a S", 3).text).toBe("a ");
    expect(m.push("<7>", 7)).toEqual({ text: "S", done: true, reason: "stop_id", stop: 7 });
  });

  it("merges the caller's EOS ids", () => {
    const m = matcher([7], [50256, 50257]);
    expect([...m.ids].sort()).toEqual([50256, 50257, 7]);
    expect(m.isStopId(50257)).toBe(true);
    expect(m.isStopId(3)).toBe(false);
    expect(feed(m, [["x", 1], ["<|endoftext|>", 50256]]).map((s) => [s.text, s.reason])).toEqual([
      ["x", undefined],
      ["", "stop_id"],
    ]);
    expect(StopMatcher.fromOption(undefined, [2]).push("", 2).done).toBe(true);
  });
});

describe("StopMatcher: unicode", () => {
  it("matches an emoji stop string split between two pieces mid surrogate pair", () => {
    const m = matcher("😀");
    expect(m.push("hi \ud83d").text).toBe("hi ");
    expect(m.push("\ude00 there")).toMatchObject({ text: "", done: true, stop: "😀" });
  });

  it("never emits half a surrogate pair, even without stop strings", () => {
    const m = matcher([2]);
    expect(m.push("a\ud83d").text).toBe("a");
    expect(m.push("\ude00b").text).toBe("😀b");
    // A different emoji sharing the high surrogate is released whole.
    const n = matcher("😀");
    expect(texts(feed(n, ["\ud83d", "\ude01!"]))).toEqual(["", "😁!"]);
  });

  it("matches CJK and combining sequences across pieces, code unit for code unit", () => {
    expect(texts(feed(matcher("の終わり"), ["物語", "の終", "わり。"]))).toEqual(["物語", "", ""]);
    const acute = matcher("e\u0301");
    expect(texts(feed(acute, ["caf", "e", "\u0301!"]))).toEqual(["caf", "", ""]);
    // No normalisation: the precomposed é is not the stop string e + U+0301.
    expect(matcher("e\u0301").push("caf\u00e9").text).toBe("caf\u00e9");
  });
});

/** Reference: the first piece after which some stop occurs in the text so far; emit up to the earliest start. */
function reference(pieces: readonly string[], stops: readonly string[]): { text: string; stopped: boolean } {
  let t = "";
  for (const p of pieces) {
    t += p;
    const starts = stops.map((s) => t.indexOf(s)).filter((k) => k >= 0);
    if (starts.length > 0) return { text: t.slice(0, Math.min(...starts)), stopped: true };
  }
  return { text: t, stopped: false };
}

describe("StopMatcher: randomized against the reference", () => {
  it("emits exactly the reference text, and never a partial stop that later completes", () => {
    const r = new Rng(2024);
    const alphabet = ["a", "b", "c", "ab", "\n", "é", "😀", "\ud83d", "\ude00"];
    const pick = (n: number): string => Array.from({ length: n }, () => alphabet[r.nextUint32() % alphabet.length]!).join("");
    const outcomes = { stopped: 0, ran: 0 };
    for (let t = 0; t < 2000; t++) {
      const stops = [...new Set(Array.from({ length: 1 + (r.nextUint32() % 3) }, () => pick(1 + (r.nextUint32() % 3))))].filter(
        (s) => !/\p{Cs}/u.test(s),
      );
      if (stops.length === 0) continue;
      const pieces = Array.from({ length: 1 + (r.nextUint32() % 12) }, () => pick(r.nextUint32() % 3));
      const m = new StopMatcher(parseStop(stops));
      let emitted = "";
      let stopped = false;
      for (const p of pieces) {
        const step = m.push(p);
        emitted += step.text;
        for (const s of stops) expect(emitted.includes(s)).toBe(false);
        if (step.done) {
          stopped = true;
          break;
        }
      }
      if (!stopped) emitted += m.flush();
      const want = reference(pieces, stops);
      expect({ text: emitted, stopped }, JSON.stringify({ stops, pieces })).toEqual(want);
      outcomes[stopped ? "stopped" : "ran"]++;
    }
    expect(outcomes.stopped).toBeGreaterThan(200); // both outcomes are well exercised
    expect(outcomes.ran).toBeGreaterThan(200);
  });
});

describe("parseStop", () => {
  it("splits strings and ids, dropping duplicates", () => {
    expect(parseStop("###")).toEqual({ strings: ["###"], ids: [] });
    expect(parseStop(["a", 3, "b", 3, "a", 0])).toEqual({ strings: ["a", "b"], ids: [3, 0] });
    expect(parseStop(undefined)).toEqual({ strings: [], ids: [] });
    expect(parseStop([])).toEqual({ strings: [], ids: [] });
  });

  const bad: [unknown, string, string][] = [
    [5, "stop", "stop: expected a string or an array of strings and token ids, got 5"],
    [{ a: 1 }, "stop", "stop: expected a string or an array of strings and token ids, got an object"],
    [null, "stop", "stop: expected a string or an array of strings and token ids, got null"],
    [[1.5], "stop[0]", "stop[0]: expected a non-negative integer token id, got 1.5"],
    [["x", -1], "stop[1]", "stop[1]: expected a non-negative integer token id, got -1"],
    [[""], "stop[0]", 'stop[0]: expected a non-empty stop string, got ""'],
    [[null], "stop[0]", "stop[0]: expected a stop string or a non-negative integer token id, got null"],
    [[["a"]], "stop[0]", "stop[0]: expected a stop string or a non-negative integer token id, got an array"],
    ["", "stop", 'stop: expected a non-empty stop string, got ""'],
    [["a\ud800"], "stop[0]", "stop[0]: expected a well-formed string, got one with a lone surrogate"],
  ];
  it.each(bad)("refuses %o", (stop, option, message) => {
    let err: unknown;
    try {
      parseStop(stop);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(GenerationOptionError);
    expect(err).toMatchObject({ code: "E_OPTION", option, message });
    expect(() => StopMatcher.fromOption(stop as string)).toThrow(GenerationOptionError);
  });
});
