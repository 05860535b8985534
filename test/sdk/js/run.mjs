// Drives the official Deepgram JS SDK (@deepgram/sdk, version pinned in package.json)
// against hark's Deepgram emulator, one scenario per run. It is started and judged by
// ../js_test.go, which runs the emulator in-process: this script only uses the SDK as an
// application would and reports what it saw as JSON lines on stdout, one per event; the Go
// test injects faults between lines it waits for. Nothing here decides pass or fail.
//
//   node run.mjs SCENARIO HOST:PORT WAVFILE
//
// The API key (or access token) comes from DGEMU_TEST_KEY, as the SDK would take
// DEEPGRAM_API_KEY; it is never printed.
import { readFileSync, createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { DeepgramClient } from "@deepgram/sdk";

const [scenario, addr, wavPath] = process.argv.slice(2);
const key = process.env.DGEMU_TEST_KEY;
const environment = {
  base: `http://${addr}`,
  production: `ws://${addr}`,
  agent: `ws://${addr}`,
  agentRest: `http://${addr}`,
};

function report(ev) {
  process.stdout.write(JSON.stringify(ev) + "\n");
}

// Lines from the Go test on stdin ("go" after it injected a fault).
const lines = createInterface({ input: process.stdin });
const waiting = [];
lines.on("line", (l) => {
  const w = waiting.shift();
  if (w) w(l);
});
function nextLine() {
  return new Promise((resolve) => waiting.push(resolve));
}

// The demo WAV's PCM (44-byte canonical header), sent as 100 ms messages.
function pcm() {
  const b = readFileSync(wavPath);
  return b.subarray(44);
}

async function sendAudio(socket, audio, fromSec = 0, toSec = Infinity) {
  const chunk = 3200;
  const start = Math.floor((fromSec * 16000) / 1600) * chunk;
  const end = Math.min(audio.length, Number.isFinite(toSec) ? Math.floor((toSec * 16000) / 1600) * chunk : audio.length);
  for (let off = start; off < end; off += chunk) {
    socket.sendMedia(audio.subarray(off, Math.min(off + chunk, end)));
    // Yield so the socket can flush; no pacing is needed against the emulator.
    if ((off / chunk) % 20 === 0) await new Promise((r) => setImmediate(r));
  }
}

const liveArgs = {
  model: "nova-3",
  language: "en",
  encoding: "linear16",
  sample_rate: 16000,
  channels: 1,
  punctuate: "true",
  interim_results: "true",
  utterance_end_ms: 1000,
  vad_events: "true",
  endpointing: 300,
};

function watch(socket) {
  socket.on("open", () => report({ ev: "open" }));
  socket.on("message", (m) => {
    if (m && m.type === "Results") {
      report({
        ev: "message",
        type: "Results",
        is_final: m.is_final,
        speech_final: m.speech_final,
        from_finalize: m.from_finalize,
        transcript: m.channel?.alternatives?.[0]?.transcript ?? null,
        request_id: m.metadata?.request_id,
      });
    } else if (m && m.type === "Metadata") {
      report({ ev: "message", type: "Metadata", duration: m.duration, request_id: m.request_id, models: m.models ?? null });
    } else {
      report({ ev: "message", type: m?.type ?? typeof m });
    }
  });
  socket.on("close", (e) => report({ ev: "close", code: e?.code ?? null, reason: e?.reason ?? "" }));
  socket.on("error", (e) => report({ ev: "error", message: String(e?.message ?? e).slice(0, 300) }));
}

async function live(client, extra = {}) {
  const socket = await client.listen.v1.connect({ ...liveArgs, ...extra });
  watch(socket);
  socket.connect();
  await socket.waitForOpen();
  return socket;
}

async function main() {
  switch (scenario) {
    case "live": {
      // Live streaming with Results and Metadata, API key (Token).
      const socket = await live(new DeepgramClient({ apiKey: key, environment }));
      await sendAudio(socket, pcm());
      socket.sendFinalize({ type: "Finalize" });
      socket.sendCloseStream({ type: "CloseStream" });
      await nextLine(); // the Go test says when it has seen the close
      break;
    }
    case "live-token": {
      // A short-lived token from the grant endpoint, then Bearer.
      const authClient = new DeepgramClient({ apiKey: key, environment });
      const grant = await authClient.auth.v1.tokens.grant({ ttl_seconds: 60 });
      report({ ev: "grant", expires_in: grant.expires_in, has_token: typeof grant.access_token === "string" });
      const socket = await live(new DeepgramClient({ accessToken: grant.access_token, environment }));
      await sendAudio(socket, pcm(), 0, 4);
      socket.sendCloseStream({ type: "CloseStream" });
      await nextLine();
      break;
    }
    case "refused": {
      // A handshake the service refuses (wrong key): what the SDK reports, and whether
      // it retries.
      const client = new DeepgramClient({ apiKey: "wrong-key", environment });
      const socket = await client.listen.v1.connect({ ...liveArgs, reconnectAttempts: 3 });
      watch(socket);
      socket.connect();
      try {
        await socket.waitForOpen();
        report({ ev: "opened-unexpectedly" });
      } catch (e) {
        report({ ev: "waitForOpen-rejected", message: String(e?.message ?? e).slice(0, 300) });
      }
      await nextLine();
      socket.close();
      break;
    }
    case "close1011": {
      // The server closes with 1011 mid-stream; the SDK's reconnecting socket reconnects.
      const socket = await live(new DeepgramClient({ apiKey: key, environment }), { reconnectAttempts: 2 });
      const audio = pcm();
      await sendAudio(socket, audio, 0, 2);
      report({ ev: "sent-first-part" });
      await nextLine(); // the Go test closed the session with 1011
      // Wait for the reconnect (the SDK opens a new socket by itself), then go on.
      await new Promise((resolve) => {
        const t = setInterval(() => {
          if (socket.readyState === 1) {
            clearInterval(t);
            resolve();
          }
        }, 10);
      });
      report({ ev: "reopened" });
      await sendAudio(socket, audio, 2, 8);
      socket.sendCloseStream({ type: "CloseStream" });
      await nextLine();
      socket.close();
      break;
    }
    case "prerecorded": {
      const client = new DeepgramClient({ apiKey: key, environment });
      const r = await client.listen.v1.media.transcribeFile(createReadStream(wavPath), {
        model: "nova-3",
        punctuate: true,
        utterances: true,
      });
      report({
        ev: "prerecorded",
        request_id: r.metadata?.request_id,
        duration: r.metadata?.duration,
        transcript: r.results?.channels?.[0]?.alternatives?.[0]?.transcript,
        utterances: (r.results?.utterances ?? []).map((u) => u.transcript),
      });
      break;
    }
    case "prerecorded-bad-model": {
      const client = new DeepgramClient({ apiKey: key, environment });
      try {
        await client.listen.v1.media.transcribeFile(createReadStream(wavPath), { model: "nova-2-meeting", language: "fr" });
        report({ ev: "prerecorded-accepted" });
      } catch (e) {
        report({ ev: "prerecorded-error", status: e?.statusCode ?? null, body: e?.body ?? null });
      }
      break;
    }
    default:
      throw new Error(`unknown scenario ${scenario}`);
  }
}

main()
  .then(() => {
    report({ ev: "done" });
    process.exit(0);
  })
  .catch((e) => {
    report({ ev: "fatal", message: String(e?.stack ?? e).slice(0, 600) });
    process.exit(1);
  });
