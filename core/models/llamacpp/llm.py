"""Chat through llama-cpp-python: any GGUF file, chat template taken from the GGUF metadata.

Without ``model_path`` the embedded model chosen by ``embedded`` is used
(:mod:`core.models.llamacpp.embedded`: Qwen2.5-Coder-0.5B-Instruct by default, SmolLM2-135M
as the small English-only choice). Token counts come from the model's own tokenizer, and
``repeat_penalty`` is applied to every request.

Prompt evaluation has pause points: llama.cpp's ``eval`` is replaced on the instance by one that
evaluates ``prefill_chunk_tokens`` at a time and calls the generation's ``check`` between chunks,
so a chat whose long prompt is being evaluated hands the context over (its evaluated tokens kept
by :meth:`LlamaCppLlm.save_state`) within one chunk, not after the whole prompt.

Tool calls: the functions go to the GGUF's own chat template when it renders ``tools`` (Qwen2.5
does: its native ``<tool_call>`` format); for a template without, the same Qwen-style section is
added to the system prompt and earlier calls and results are written as text. The calls are
parsed out of the generated text (:mod:`core.models.tool_text`); generation stops once the model
only repeats its calls. Tool chats are cached like plain ones, keyed by the tools offered and the
messages as the template gets them (calls and results included): a device's tools are a 609-token
prompt with the firmware's seven (7.5 s on 2 cores), evaluated once, not after every chat that
used the context in between; primers (a system prompt, with or without tools, and
``WARM_USER_TEXT``) are also kept on disk (:mod:`core.models.llamacpp.saved_prompts`) and read
back when the model loads again.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import json
import logging
import sys
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InferenceError, ModelLoadError
from core.models.base import CancelCheck, never_cancelled
from core.models.llamacpp.embedded import embedded_gguf
from core.models.llamacpp.prompt_cache import (
    MessagesKey,
    PromptCache,
    common_messages,
    messages_key,
)
from core.models.llamacpp.saved_prompts import SavedPrompt, SavedPrompts, identity
from core.models.llm import WARM_USER_TEXT, ChatEvent, ChatMessage, Llm, LlmSettings, ToolSpec
from core.models.tool_text import ToolTextParser, call_text, tools_block

log = logging.getLogger(__name__)

_DEVNULL_FILES = ("outnull_file", "errnull_file")
SAVED_PROMPTS_DIR = "llm-prompts"  # under the data dir


@functools.cache  # registered once per process
def close_llama_devnull_at_exit() -> None:
    """llama_cpp opens two /dev/null files at import (``llama_cpp._utils``: where a model
    load's output goes) and never closes them: every process that imported it ended with
    "ResourceWarning: unclosed file <... name='/dev/null'>". Close them at interpreter exit
    (they are used only while a model loads; nothing loads then). Registered once."""
    atexit.register(_close_llama_devnull)


def _close_llama_devnull() -> None:
    utils = sys.modules.get("llama_cpp._utils")
    for name in _DEVNULL_FILES:
        handle = getattr(utils, name, None)
        if handle is not None and not handle.closed:
            handle.close()


@dataclass(frozen=True, slots=True)
class _SavedSequence:
    kv: bytes  # llama_state_seq_get_data of sequence 0
    n_tokens: int
    tokens: Any  # numpy int array: the evaluated tokens
    sampler: Any  # the generation's sampler chain (penalty history, RNG)
    key: MessagesKey = ()  # the conversation the context held


class LlamaCppLlm(Llm):
    """One ``llama_cpp.Llama``. A context is not thread-safe: the scheduler runs one job on it
    at a time (resource ``model:llm``). A job paused between tokens hands the context over:
    :meth:`save_state` keeps its KV cache, :meth:`restore_state` puts it back on resume.
    Finished conversations' KV caches are kept in a :class:`PromptCache`, so a conversation's
    next prompt is not evaluated from scratch after other conversations used the context."""

    pause_keeps_model = False

    def __init__(self, settings: LlmSettings, *, cache_dir: Path) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self._llama: Any = None
        self.model_path: Path | None = settings.model_path
        self.prompt_cache: PromptCache[_SavedSequence] = PromptCache(settings.prompt_cache_entries)
        self._context_key: MessagesKey = ()  # the conversation the context's tokens belong to
        self._prefill_check: CancelCheck | None = None  # the check of the generation stepping
        self.prefill_pauses = 0  # pause points reached inside prompt evaluation (tests, bench)
        self._saved: SavedPrompts | None = None  # primers on disk (set by load)

    def load(self) -> None:
        path = self._settings.model_path or embedded_gguf(self._settings.embedded, self._cache_dir)
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelLoadError(f"llama-cpp-python is not installed: {exc}") from exc
        close_llama_devnull_at_exit()
        on_gpu = self._settings.device.startswith("cuda")
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=self._settings.n_ctx,
                n_threads=self._settings.n_threads,
                n_threads_batch=self._settings.n_threads,
                n_gpu_layers=self._settings.n_gpu_layers if on_gpu else 0,
                seed=self._settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        self.model_path = path
        self._llama.eval = self._eval_in_chunks  # pause points inside prompt evaluation
        self._read_saved(path, str(llama_cpp.__version__))
        if self._settings.warmup:
            self._warm_up(path)

    def _warm_up(self, path: Path) -> None:
        """One greedy token through the chat template: touches every weight page and sets up
        the compute buffers now, not during the first user's request (~0.15 s on SmolLM2).
        Then each of ``warm_prompts`` once, kept in the prompt cache: the first request under
        that system prompt starts from its KV instead of evaluating it (~1 s of a device's
        first turn with the 0.5B default on 2 cores)."""
        try:
            self._llama.create_chat_completion(
                messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0.0
            )
            for prompt in self._settings.warm_prompts or ():
                primer = [ChatMessage("system", prompt), ChatMessage("user", WARM_USER_TEXT)]
                hit = self.prompt_cache.best(messages_key(primer))
                if hit is not None and hit.shared >= len(primer):
                    continue  # read back from disk (_read_saved)
                for _ in self._generate(primer, 1, 0.0, never_cancelled):
                    pass
        except (ValueError, RuntimeError, InferenceError) as exc:
            self.unload()
            raise ModelLoadError(f"llama.cpp could not run {path}: {exc}") from exc

    def _read_saved(self, path: Path, llama_version: str) -> None:
        """The primers saved on disk for this model and context, into the prompt cache."""
        capacity = self._settings.saved_prompts
        if capacity <= 0 or self.prompt_cache.capacity <= 0:
            self._saved = None
            return
        try:
            ident = identity(path, llama_version, self._settings.n_ctx)
        except OSError:
            self._saved = None
            return
        self._saved = SavedPrompts(self._cache_dir / SAVED_PROMPTS_DIR, ident, capacity=capacity)
        for saved in reversed(self._saved.read_all()):  # oldest first: the newest most recent
            sequence = _SavedSequence(
                saved.kv, int(saved.tokens.size), saved.tokens, None, key=saved.key
            )
            self.prompt_cache.put(saved.key, sequence)

    def unload(self) -> None:
        self.prompt_cache = PromptCache(self._settings.prompt_cache_entries)
        self._context_key = ()
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()

    def _eval_in_chunks(self, tokens: Sequence[int]) -> None:
        """llama.cpp's ``eval`` a chunk at a time, calling the stepping generation's ``check``
        between chunks. Between two chunks the context's state (KV cache, ``n_tokens``,
        ``input_ids``) is consistent, so a pause there saves and restores it like a pause
        between tokens. No check after the last chunk: the logits sampled next are this
        generation's own."""
        llama = self._llama
        evaluate = type(llama).eval
        check = self._prefill_check  # read once: a pause lets another generation set its own
        size = self._settings.prefill_chunk_tokens
        if check is None or len(tokens) <= size:
            evaluate(llama, tokens)
            return
        for start in range(0, len(tokens), size):
            if start:
                self.prefill_pauses += 1
                check()
            evaluate(llama, tokens[start : start + size])

    def count_tokens(self, text: str) -> int:
        llama = self._llama
        if llama is None or not text:
            return super().count_tokens(text)
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def context_tokens(self) -> int | None:
        llama = self._llama
        return None if llama is None else int(llama.n_ctx())

    def save_state(self) -> object:
        """This job's sequence (KV cache, tokens, sampler) before another job uses the context."""
        llama = self._llama
        if llama is None:
            return None
        import llama_cpp

        ctx = llama._ctx.ctx
        size = int(llama_cpp.llama_state_seq_get_size(ctx, 0))
        buffer = (ctypes.c_uint8 * size)()
        written = int(llama_cpp.llama_state_seq_get_data(ctx, buffer, size, 0))
        n_tokens = int(llama.n_tokens)
        return _SavedSequence(
            ctypes.string_at(buffer, written),
            n_tokens,
            llama.input_ids[:n_tokens].copy(),
            llama._sampler,
            self._context_key,
        )

    def restore_state(self, state: object) -> None:
        if isinstance(state, _SavedSequence):
            self._load_sequence(state)
            self._llama._sampler = state.sampler

    def _load_sequence(self, state: _SavedSequence) -> None:
        llama = self._llama
        if llama is None:
            return
        import llama_cpp

        ctx = llama._ctx.ctx
        llama._ctx.kv_cache_clear()
        data = (ctypes.c_uint8 * len(state.kv)).from_buffer_copy(state.kv)
        if int(llama_cpp.llama_state_seq_set_data(ctx, data, len(state.kv), 0)) == 0:
            raise InferenceError("llama.cpp could not restore a paused generation")
        llama.n_tokens = state.n_tokens
        llama.input_ids[: state.n_tokens] = state.tokens
        # the logits are still those of the last decode (another sequence's): a prompt that is
        # exactly this sequence would be sampled from them (llama.cpp-python skips evaluating
        # a prompt it holds whole unless told so; a primer ends at its prompt: trial, "你好"
        # answered with nothing). Its own load_state says the same.
        llama._requires_eval = True
        self._context_key = state.key

    def _continue_cached(self, key: MessagesKey) -> None:
        """Start from the cached conversation ``key`` continues furthest, if it continues it
        further than what the context holds (a shared system prompt counts)."""
        hit = self.prompt_cache.best(key)
        held = common_messages(self._context_key, key)
        # a hit sharing only the system prompt is worth it when the context holds another one
        # (a device after QQ chats, an English turn after Chinese ones: a warm prompt)
        if hit is None or hit.shared <= held:
            if held <= 1:
                self.prompt_cache.misses += 1
            return
        try:
            self._load_sequence(hit.state)
        except InferenceError as exc:  # e.g. a state read from disk the context refuses
            log.warning("cached prompt dropped: %s", exc.message)
            self._llama.n_tokens = 0  # the KV cache was cleared: evaluate from scratch
            self._context_key = ()
            self.prompt_cache.forget(lambda k: k != hit.key)
            return
        self.prompt_cache.used(hit)

    def _keep(self, key: MessagesKey) -> None:
        """Cache the finished conversation ``key`` (the context now holds it)."""
        self._context_key = key
        if self.prompt_cache.capacity > 0:
            saved = self.save_state()
            if isinstance(saved, _SavedSequence):
                self.prompt_cache.put(key, saved)
                disk = self._saved
                if disk is not None and is_primer(key) and not disk.has(key):
                    disk.write(SavedPrompt(key, saved.tokens, saved.kv))

    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[str]:
        # no lock: the scheduler's 'model:llm' resource admits one job per context at a time
        yield from self._generate(messages, max_tokens, temperature, check)

    def stream_chat_events(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: Sequence[ToolSpec],
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
    ) -> Iterator[ChatEvent]:
        if not tools:
            yield from self._generate(messages, max_tokens, temperature, check)
            return
        parser = ToolTextParser(t.name for t in tools)
        native = self.template_has_tools()
        wire = _wire_messages(messages, native=native, tools=tools)
        pieces = self._generate(
            messages,
            max_tokens,
            temperature,
            check,
            wire=wire,
            tools=tools if native else (),
            key=tool_chat_key(wire, tools),
        )
        try:
            for piece in pieces:
                yield from parser.push(piece)
                if parser.done:  # the calls are complete; the rest would be repeats
                    break
        finally:
            pieces.close()
        yield from parser.finish()

    def template_has_tools(self) -> bool:
        """The GGUF's chat template renders a ``tools`` list (Qwen2.5, Llama 3.1, Hermes)."""
        llama = self._llama
        template = llama.metadata.get("tokenizer.chat_template", "") if llama is not None else ""
        return "tools" in template

    def _generate(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int,
        temperature: float,
        check: CancelCheck,
        *,
        wire: list[dict[str, Any]] | None = None,
        tools: Sequence[ToolSpec] = (),
        key: MessagesKey | None = None,
    ) -> Generator[str, None, None]:
        """``wire``: the messages as the template gets them (default: ``messages``); ``key``:
        what the prompt is cached under (default: :func:`messages_key` of ``messages``)."""
        if self._llama is None:
            raise InferenceError("llama.cpp model is not loaded")
        check()
        key = messages_key(messages) if key is None else key
        self._continue_cached(key)
        self._context_key = key
        chunks = self._llama.create_chat_completion(
            messages=wire or [{"role": m.role, "content": m.content} for m in messages],
            tools=[_tool_json(t) for t in tools] or None,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=self._settings.top_p,
            top_k=self._settings.top_k,
            repeat_penalty=self._settings.repeat_penalty,
            stream=True,
        )
        reply: list[str] = []
        try:
            while True:
                check()  # before each token: a cancel stops generation within one token
                self._prefill_check = check  # the prompt (first next()) pauses between chunks
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except (RuntimeError, ValueError) as exc:
                    raise InferenceError(f"llama.cpp generation failed: {exc}") from exc
                finally:
                    self._prefill_check = None
                piece = chunk["choices"][0]["delta"].get("content")
                if piece:
                    reply.append(piece)
                    yield piece
        except GeneratorExit:
            # closed by the job's own code while it holds the context (the reply guard, a
            # cancel at emit): what was generated is a conversation worth keeping
            chunks.close()
            self._keep((*key, ("assistant", "".join(reply))))
            raise
        except BaseException:
            # e.g. cancelled while paused: another job may be using the context right now
            chunks.close()
            raise
        chunks.close()
        self._keep((*key, ("assistant", "".join(reply))))


def is_primer(key: MessagesKey) -> bool:
    """``key`` is a primer's conversation: (tools,) system, ``WARM_USER_TEXT``, its reply."""
    tools = bool(key) and key[0][0] == "tools"
    body = key[1:] if tools else key
    if len(body) != 3 or body[0][0] != "system" or body[1][0] != "user":
        return False
    text: object = body[1][1]
    if tools:  # a tool chat keys each message as its JSON
        try:
            text = json.loads(body[1][1]).get("content")
        except (ValueError, AttributeError):
            return False
    return text == WARM_USER_TEXT


def tool_chat_key(wire: Sequence[dict[str, Any]], tools: Sequence[ToolSpec]) -> MessagesKey:
    """A tool chat's cache key: the tools offered, then each wire message whole (a call or a
    result is more than its text), so a tool chat never continues a plain one's state."""
    offered = json.dumps([_tool_json(t) for t in tools], ensure_ascii=False, sort_keys=True)
    return (
        ("tools", offered),
        *((m["role"], json.dumps(m, ensure_ascii=False, sort_keys=True)) for m in wire),
    )


def _tool_json(tool: ToolSpec) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description}
    return {"type": "function", "function": {**function, "parameters": dict(tool.parameters)}}


def _arguments(text: str) -> object:
    try:
        return json.loads(text) if text.strip() else {}
    except ValueError:
        return {}


def _wire_messages(
    messages: Sequence[ChatMessage], *, native: bool, tools: Sequence[ToolSpec]
) -> list[dict[str, Any]]:
    """The messages for llama.cpp's template. ``native``: the template renders tools, calls
    (arguments as objects, as Qwen's template expects) and ``tool`` results itself; otherwise
    the tool section joins the system prompt, calls become assistant text and results user
    ``<tool_response>`` text."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if native:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": _arguments(c.arguments)},
                    }
                    for c in m.tool_calls
                ]
            if m.role == "tool":
                item["tool_call_id"] = m.tool_call_id
            out.append(item)
        elif m.role == "tool":
            out.append(
                {"role": "user", "content": f"<tool_response>\n{m.content}\n</tool_response>"}
            )
        elif m.tool_calls:
            text = "\n".join([m.content, *(call_text(c) for c in m.tool_calls)]).strip()
            out.append({"role": "assistant", "content": text})
        else:
            out.append({"role": m.role, "content": m.content})
    if not native:
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"] + tools_block(tools)}
        else:
            out.insert(0, {"role": "system", "content": tools_block(tools).strip()})
    return out
