"""A linearizability checker for register / key-value histories (Wing & Gong's search with
Lowe's memoization, as in Knossos and Porcupine). Standard library only.

A history is a list of Op: each has a key, a kind ("read", "write", "cas"), an input, an
output, and the client-side times of its invocation (`call`) and of its reply (`ret`).
Outcomes, as clients record them:
- ok: the reply was seen. `ret` is its time, `output` what it said.
- pending (`ret is None`): the outcome is unknown (timeout, connection reset after the request
  was sent, 503 "not committed in time"). A pending write may take effect at any moment
  after its call, or never. Pending reads say nothing and are dropped.
- definite failures (4xx, connection refused before sending) have no effect: do not record
  them, or record them with Recorder.fail, which drops them.

Linearizability is local (Herlihy & Wing 1990, Theorem 1): a key-value history is linearizable
iff each key's sub-history is, so check_kv checks every key separately.

The register model: state is the value (the initial one is `init`, None by default);
write(v) -> state v; read() -> v is allowed iff state == v; cas((old, new)) -> True iff
state == old (then state = new), -> False iff state != old.
"""
import json
import threading
import time

INF = float("inf")


class Op:
    __slots__ = ("id", "key", "kind", "input", "output", "call", "ret", "client")

    def __init__(self, key, kind, input=None, output=None, call=0.0, ret=None, client=None):
        if kind not in ("read", "write", "cas"):
            raise ValueError(f"unknown op kind {kind!r}")
        self.id = None
        self.key, self.kind, self.input, self.output = key, kind, input, output
        self.call, self.ret, self.client = call, ret, client

    @property
    def pending(self):
        return self.ret is None

    def __repr__(self):
        end = "?" if self.ret is None else f"{self.ret:.4f}"
        if self.kind == "write":
            what = f"write({self.input!r})"
        elif self.kind == "read":
            what = f"read() -> {self.output!r}"
        else:
            what = f"cas({self.input[0]!r}, {self.input[1]!r}) -> {self.output!r}"
        return f"<{self.key!r} {what} [{self.call:.4f}, {end}]{' c=' + str(self.client) if self.client is not None else ''}>"


def register_step(state, op):
    """(allowed, next_state) for one op applied to a register holding `state`."""
    if op.kind == "write":
        return True, op.input
    if op.kind == "read":
        return op.output == state, state
    old, new = op.input
    if op.pending:
        # A cas whose answer is unknown: it happened with either result.
        return True, (new if state == old else state)
    if op.output:
        return state == old, new
    return state != old, state


class _Entry:
    __slots__ = ("op", "index", "is_call", "time", "match", "prev", "next")

    def __init__(self, op, index, is_call, t):
        self.op, self.index, self.is_call, self.time = op, index, is_call, t
        self.match = self.prev = self.next = None


class Result:
    """ok: True (linearizable), False (not), None (gave up after `max_steps`).
    On False, `culprit` is an op that could not be linearized at the deepest point the search
    reached and `prefix` the ops linearized there, in order."""

    def __init__(self, ok, key=None, culprit=None, prefix=(), steps=0, ops=0):
        self.ok, self.key, self.culprit, self.prefix, self.steps, self.ops = ok, key, culprit, list(prefix), steps, ops

    def __bool__(self):
        return self.ok is True

    def explain(self):
        if self.ok:
            return f"linearizable ({self.ops} ops, {self.steps} steps)"
        if self.ok is None:
            return f"inconclusive: gave up after {self.steps} steps on key {self.key!r} ({self.ops} ops)"
        tail = "\n  ".join(repr(o) for o in self.prefix[-8:])
        return (f"NOT linearizable on key {self.key!r} ({self.ops} ops): cannot place {self.culprit!r}\n"
                f" after the longest linearizable prefix ({len(self.prefix)} ops), ending:\n  {tail}")


def _drop_unobserved_pending_writes(ops):
    """A pending write may never have taken effect. If no read (and no cas) ever saw its value,
    leaving it out changes nothing any other op could observe: in a linearization that includes
    it, the state it sets lasts until the next write and no op in that span reads it. So such
    writes are dropped before the search; they are what makes it expensive."""
    seen = set()
    for o in ops:
        if o.kind == "read":
            seen.add(_hashable(o.output))
        elif o.kind == "cas":
            seen.add(_hashable(o.input[0]))
            seen.add(_hashable(o.input[1]))
    return [o for o in ops if not (o.kind == "write" and o.pending and _hashable(o.input) not in seen)]


def _hashable(v):
    try:
        hash(v)
        return v
    except TypeError:
        return repr(v)


def check(ops, init=None, step=register_step, max_steps=5_000_000, key=None):
    """Checks one object's history (register model unless `step` says otherwise).
    Pending reads are ignored."""
    ops = [o for o in ops if not (o.kind == "read" and o.pending)]
    if step is register_step:
        ops = _drop_unobserved_pending_writes(ops)
    for i, o in enumerate(ops):
        o.id = i
    entries = []
    for o in ops:
        c = _Entry(o, o.id, True, o.call)
        r = _Entry(o, o.id, False, INF if o.pending else o.ret)
        if not o.pending and o.ret < o.call:
            raise ValueError(f"op returns before its call: {o!r}")
        c.match = r
        entries += (c, r)
    # Calls before returns at equal times: such ops count as concurrent (the lenient reading).
    entries.sort(key=lambda e: (e.time, 0 if e.is_call else 1, e.index))
    head = _Entry(None, -1, False, -INF)
    prev = head
    for e in entries:
        prev.next, e.prev = e, prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next is not None:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next is not None:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next is not None:
            m.next.prev = m
        e.prev.next = e
        if e.next is not None:
            e.next.prev = e

    state = init
    linearized = 0
    cache = set()
    calls = []  # (entry, state before it)
    best, culprit = [], None
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return Result(None, key, steps=steps, ops=len(ops))
        if entry is None:
            break
        if entry.is_call:
            allowed, nxt = step(state, entry.op)
            if allowed:
                bits = linearized | (1 << entry.index)
                if (bits, nxt) not in cache:
                    cache.add((bits, nxt))
                    calls.append((entry, state))
                    state, linearized = nxt, bits
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if entry.op.pending:
                # Only returns at infinity are left in front of us: every op not yet linearized
                # is pending (its return is at infinity too) and may never have taken effect.
                return Result(True, key, steps=steps, ops=len(ops))
            if len(calls) >= len(best):
                best, culprit = [c[0].op for c in calls], entry.op
            if not calls:
                return Result(False, key, culprit, best, steps, len(ops))
            e, state = calls.pop()
            linearized &= ~(1 << e.index)
            unlift(e)
            entry = e.next
    return Result(True, key, steps=steps, ops=len(ops))


def check_kv(ops, init=None, step=register_step, max_steps=5_000_000):
    """Checks a key-value history key by key. `init` is the initial value of every key, or a
    dict key -> initial value (missing keys start at None). Returns the first failing (or
    inconclusive) Result, else an ok Result covering all keys."""
    by_key = {}
    for o in ops:
        by_key.setdefault(o.key, []).append(o)
    total_steps = 0
    for k in sorted(by_key, key=repr):
        start = init.get(k) if isinstance(init, dict) else init
        r = check(by_key[k], start, step, max_steps, key=k)
        total_steps += r.steps
        if r.ok is not True:
            return r
    return Result(True, None, steps=total_steps, ops=len(ops))


def dump(ops, path):
    """Writes a history as JSON lines (to reproduce a failure offline with load())."""
    with open(path, "w") as f:
        for o in ops:
            f.write(json.dumps({"key": o.key, "kind": o.kind, "input": o.input, "output": o.output,
                                "call": o.call, "ret": o.ret, "client": o.client}) + "\n")


def load(path):
    out = []
    with open(path) as f:
        for line in f:
            d = json.loads(line)
            inp = tuple(d["input"]) if d["kind"] == "cas" else d["input"]
            out.append(Op(d["key"], d["kind"], inp, d["output"], d["call"], d["ret"], d["client"]))
    return out


class Recorder:
    """Thread-safe history recording for test clients:

        h = rec.invoke(key, "write", value, client=3)
        ... do the request ...
        rec.ok(h, output)   # reply seen
        rec.info(h)         # unknown outcome (timeout / reset / 503): kept as pending
        rec.fail(h)         # definitely no effect (4xx, refused): dropped
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.lock = threading.Lock()
        self.ops = []
        self.failed = 0

    def invoke(self, key, kind, input=None, client=None):
        op = Op(key, kind, input=input, call=self.clock(), client=client)
        with self.lock:
            self.ops.append(op)
        return op

    def ok(self, op, output=None):
        op.ret = self.clock()
        op.output = output

    def info(self, op):
        op.ret = None

    def fail(self, op):
        with self.lock:
            self.ops.remove(op)
            self.failed += 1

    def history(self):
        with self.lock:
            return list(self.ops)
