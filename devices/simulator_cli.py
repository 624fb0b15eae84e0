"""``xiaoyou simulate-device``: talk to a running hub like an ESP32 would, from a WAV file.

xiaoyou simulate-device --url ws://127.0.0.1:8080/xiaozhi/v1/ --wav question.wav
xiaoyou simulate-device --wav q.wav --mode manual --protocol 3 --save-audio reply.wav
"""

from __future__ import annotations

import argparse
import asyncio
import json
import wave
from pathlib import Path

from devices.simulator import DeviceSimulator, read_wav_16k


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default="ws://127.0.0.1:8080/xiaozhi/v1/", help="the hub's WebSocket URL"
    )
    parser.add_argument(
        "--wav", type=Path, required=True, help="16-bit mono WAV to speak (any rate)"
    )
    parser.add_argument("--mode", choices=["auto", "manual", "realtime"], default="auto")
    parser.add_argument(
        "--protocol", type=int, choices=[1, 2, 3], default=1, help="binary protocol version"
    )
    parser.add_argument("--token", default=None, help="device token (Authorization: Bearer ...)")
    parser.add_argument("--device-id", default=None, help="MAC-like id (default: random)")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="stream the WAV this many times real time"
    )
    parser.add_argument("--turns", type=int, default=1, help="say it this many times")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for each reply"
    )
    parser.add_argument(
        "--save-audio", type=Path, default=None, help="write the decoded reply here"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line per turn")


async def _run(args: argparse.Namespace) -> int:
    sim = DeviceSimulator(
        args.url, device_id=args.device_id, token=args.token, protocol_version=args.protocol
    )
    pcm = read_wav_16k(args.wav)
    try:
        await sim.connect()
        rtt_ms = 1000 * (sim.hello_rtt_s or 0)
        print(f"connected: session {sim.session_id}, hello round trip {rtt_ms:.0f} ms")
        for turn in range(args.turns):
            result = await sim.converse(
                pcm, mode=args.mode, speed=args.speed, timeout_s=args.timeout
            )
            latency = result.first_audio_latency_s
            summary: dict[str, object] = {
                "turn": turn + 1,
                "stt": result.stt,
                "emotion": result.emotion,
                "sentences": result.sentences,
                "packets": result.packets,
                "audio_s": round(len(result.audio) / sim.downlink_rate_hz, 2),
                "first_audio_after_speech_s": None if latency is None else round(latency, 3),
            }
            print(json.dumps(summary, ensure_ascii=False) if args.json else _human(summary))
            if args.save_audio is not None:
                with wave.open(str(args.save_audio), "wb") as out:
                    out.setnchannels(1)
                    out.setsampwidth(2)
                    out.setframerate(sim.downlink_rate_hz)
                    out.writeframes(result.audio.tobytes())
    except (OSError, TimeoutError, ConnectionError) as exc:
        print(f"error: {exc} (close code {sim.close_code} {sim.close_reason})")
        return 1
    finally:
        await sim.close()
    return 0


def _human(summary: dict[str, object]) -> str:
    lines = [f"turn {summary['turn']}: heard {summary['stt']!r}"]
    sentences = summary["sentences"]
    lines += [f"  says: {s}" for s in sentences] if isinstance(sentences, list) else []
    lines.append(
        f"  {summary['packets']} Opus packets, {summary['audio_s']} s of audio, first audio "
        f"{summary['first_audio_after_speech_s']} s after end of speech"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


if __name__ == "__main__":
    main_parser = argparse.ArgumentParser(
        prog="simulate-device", description=__doc__.splitlines()[0]
    )
    add_arguments(main_parser)
    raise SystemExit(run(main_parser.parse_args()))
