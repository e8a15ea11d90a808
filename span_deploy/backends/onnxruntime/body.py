"""The body of a split graph (stem.py) for one slide: one session, or row passes for a large slide.

A slide of at least ``ROW_PLAN_MIN_ROWS`` stage-0 rows runs in row passes and whole steps
(row_plan.py): its large row tensors are never all alive at once. A smaller one runs as one
session, which is quicker to set up. Either session is made on first use from the body's
serialized model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .row_plan import RowPlan, RowPlanError, Step, build_plan

ROW_PLAN_MIN_ROWS = 64_000     # below this the plan's set-up (a probe run, ~12 sessions: ~0.6 s) costs more than it saves
ROW_CHUNK_ROWS = 4096       # rows per chunk of a pass: its intermediates stay small (16 MB at 1,024 wide)


@dataclass
class _Name:
    name: str


class SplitBody:
    """Session-like: ``run(output_names, feed)``, ``get_inputs()``, ``get_outputs()``.

    ``run`` takes the feed's arrays: in row passes each is dropped from ``feed`` once no later
    step reads it (the caller must hold no other reference for that to free memory).
    """

    def __init__(self, body: bytes, input_names: list[str], output_names: list[str], row_input: str, cfg,
                 make_session, ops_library: str | None, single_slide: bool):
        self._body, self._make_session = body, make_session
        self._inputs, self._outputs = input_names, output_names
        self.row_input, self.cfg = row_input, cfg
        self.ops_library, self.single_slide = ops_library, single_slide
        self._whole = None
        self._plan: PlanRunner | None = None
        self.plan_error: str | None = None
        self.last_path = ""                 # "whole" or "row passes": what the last run used
        self.setup_seconds = 0.0            # session (and plan) creation for the last slide
        self._path: str | None = None       # what prepare() chose for the next run
        self._rows = -1

    def get_inputs(self) -> list[_Name]:
        return [_Name(n) for n in self._inputs]

    def get_outputs(self) -> list[_Name]:
        return [_Name(n) for n in self._outputs]

    def prepare(self, rows: int, row_dtype: np.dtype) -> None:
        """Make the sessions a slide of ``rows`` stage-0 rows runs on (before its features are read:
        the heap the set-up frees is then what the stem's chunks reuse)."""
        t = time.perf_counter()
        self._rows = int(rows)
        if rows >= ROW_PLAN_MIN_ROWS and self._planned(np.dtype(row_dtype)) is not None:
            self._path = "row passes"
        else:
            self.whole_session()
            self._path = "whole"
        self.setup_seconds = time.perf_counter() - t

    def run(self, output_names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        x = feed[self.row_input]
        if self._path is None or self._rows != int(x.shape[0]):
            self.prepare(int(x.shape[0]), x.dtype)
        self.last_path, self._path = self._path, None
        if self.last_path == "whole":
            return self.whole_session().run(output_names, feed)
        outs = self._plan.run(feed)
        return [outs[n] for n in (output_names or self._outputs)]

    def whole_session(self):
        """The one session of the whole body (made on first use)."""
        if self._whole is None:
            self._whole = self._make_session(self._take_body())
        return self._whole

    def _planned(self, row_dtype: np.dtype) -> "PlanRunner | None":
        if self._plan is None and self.plan_error is None:
            import onnx  # noqa: PLC0415

            try:
                plan = build_plan(onnx.load_from_string(self._body), self.cfg, self.row_input, row_dtype,
                                  self.ops_library)
            except RowPlanError as e:
                self.plan_error = str(e)
                return None
            self._plan = PlanRunner(plan, self._make_session)
            if self.single_slide:    # one slide: the whole model is not needed any more
                self._body = b""
            del plan
        return self._plan

    def _take_body(self) -> bytes:
        body = self._body
        if not body:
            raise RuntimeError("the body model was released after planning (single_slide)")
        if self.single_slide:
            self._body = b""
        return body


class PlanRunner:
    """Runs a RowPlan: sessions made once, tensors dropped after their last reader."""

    def __init__(self, plan: RowPlan, make_session):
        self.plan = plan
        self.step_seconds: list[float] = []      # per step, in the last run
        self.sessions = [make_session(st.model, st.kind == "row") if st.model else None for st in plan.steps]

    def run(self, env: dict[str, np.ndarray], chunk_rows: int | None = None) -> dict[str, np.ndarray]:
        """The body's outputs by name. ``env`` (the feed) is consumed."""
        chunk = int(chunk_rows or ROW_CHUNK_ROWS)
        n0 = int(env[self.plan.row_input].shape[0])
        self.step_seconds = []
        for st, sess in zip(self.plan.steps, self.sessions):
            t = time.perf_counter()
            if st.kind == "shape":
                a, b = st.shape_range
                env[st.outputs[0]] = np.array(((n0,) + st.shape_dims)[a:b], np.int64)
            elif st.kind == "row":
                self._row_pass(st, sess, env, n0, chunk)
            elif st.inplace is not None:
                self._in_place(st, sess, env)
            else:
                env.update(zip(st.outputs, sess.run(st.outputs, {i: env[i] for i in st.inputs})))
            for name in st.free_after:
                env.pop(name, None)
            self.step_seconds.append(time.perf_counter() - t)
        return {o: env[o] for o in self.plan.outputs}

    @staticmethod
    def _row_pass(st: Step, sess, env: dict, n0: int, chunk: int) -> None:
        """Chunks of rows through the pass's session, each written straight into its rows of the
        outputs (bound buffers: no chunk-sized output is allocated and copied)."""
        outs = {o: np.empty((n0,) + st.out_dims[o], st.out_dtypes[o]) for o in st.outputs}
        sliced = set(st.sliced)
        io = sess.io_binding()
        for i in st.inputs:
            if i not in sliced:
                io.bind_cpu_input(i, np.ascontiguousarray(env[i]))
        for a in range(0, n0, chunk):
            b = min(a + chunk, n0)
            for i in st.sliced:
                io.bind_cpu_input(i, env[i][a:b])
            for o, buf in outs.items():
                part = buf[a:b]
                io.bind_output(o, "cpu", 0, part.dtype, list(part.shape), part.ctypes.data)
            sess.run_with_iobinding(io)
        env.update(outs)

    @staticmethod
    def _in_place(st: Step, sess, env: dict) -> None:
        """The output written over the input it may take (the window attention over its q)."""
        out, src = st.inplace
        buf = env[src]
        io = sess.io_binding()
        for i in st.inputs:
            io.bind_cpu_input(i, np.ascontiguousarray(env[i]))
        io.bind_output(out, "cpu", 0, buf.dtype, list(buf.shape), buf.ctypes.data)
        sess.run_with_iobinding(io)
        env[out] = buf
