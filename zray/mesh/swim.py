"""SWIM membership as a state machine: no sockets, no clock of its own.

Time comes in with every call (`now`, in seconds), messages come in through `receive` and go
out through `take_outbox()`; membership changes come out of `take_events()`. The node daemon
feeds it real time and real sockets; tests and the scale benchmark feed it virtual time and an
in-memory network (`simulation.py`).

The protocol (after Das, Gupta and Motivala's SWIM, with the Lifeguard-era refinements that
memberlist popularised):

* Probing. Every `probe_interval` a member pings the next member of a shuffled round-robin
  list. No ack within `probe_timeout`: it asks `indirect_checks` other members to ping the
  target for it (ping-req). No ack, direct or indirect, by the end of the interval: the target
  becomes *suspect*.
* Suspicion. A suspect member has `suspicion_timeout` to refute; refuting means gossiping
  `alive` with a higher incarnation number, which only the member itself may do. Unrefuted,
  it becomes *dead*. An `alive` about a member overrides a `suspect`/`dead` only with a higher
  incarnation; a `suspect` overrides an `alive` of the same incarnation.
* Dissemination. Every state change becomes a broadcast, piggybacked on pings and acks and sent
  by gossip to `gossip_fanout` random members every `gossip_interval`, each broadcast
  `retransmit_mult * ceil(log10(N + 1))` times. Newer news about a member replaces older.
* Joining and anti-entropy. A joiner sends its full state to a seed, which merges it and
  answers with its own (push-pull). Members push-pull with a random member every
  `push_pull_interval`, and now and then with a member they believe dead: after a partition
  heals, that is how the two sides find each other again (each refutes the other's verdict).
* Metadata. A member's `meta` (resources, load) rides on its `alive` broadcasts; changing it
  bumps the incarnation, so the newest meta wins everywhere.

Defaults, with N the number of members (`SwimConfig`):
    probe_interval     0.5 s
    probe_timeout      0.2 s
    suspicion_timeout  suspicion_mult * max(1, log10(N)) * probe_interval   (4 -> 2 s for N <= 10)
    retransmits        retransmit_mult * ceil(log10(N + 1))                  (4 -> 8 for N <= 99)
so a killed member of a 3-10 node cluster is declared dead in about
probe wait (<= 0.5 s) + interval (0.5 s) + suspicion (2 s) + gossip (~0.2 s) < 5 s.
"""
import dataclasses
import math
import random

ALIVE = "alive"
SUSPECT = "suspect"
DEAD = "dead"
LEFT = "left"

# message kinds (the wire module gives them numbers when they travel)
PING = "ping"
ACK = "ack"
PING_REQ = "ping_req"
GOSSIP = "gossip"
PUSH_PULL = "push_pull"


@dataclasses.dataclass(frozen=True)
class SwimConfig:
    probe_interval: float = 0.5
    probe_timeout: float = 0.2
    indirect_checks: int = 3
    suspicion_mult: float = 4.0
    retransmit_mult: int = 4
    gossip_interval: float = 0.1
    gossip_fanout: int = 3
    max_piggyback: int = 16
    push_pull_interval: float = 10.0
    reconnect_interval: float = 2.0
    dead_reap_after: float = 300.0

    def __post_init__(self):
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "suspicion_mult",
                     "push_pull_interval", "reconnect_interval", "dead_reap_after"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SwimConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError("SwimConfig.probe_timeout must be shorter than probe_interval")
        for name in ("indirect_checks", "retransmit_mult", "gossip_fanout", "max_piggyback"):
            if getattr(self, name) < 1:
                raise ValueError(f"SwimConfig.{name} must be >= 1, got {getattr(self, name)}")

    def suspicion_timeout(self, n):
        return self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval

    def retransmits(self, n):
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))


@dataclasses.dataclass
class Member:
    name: str
    address: str
    incarnation: int
    state: str
    meta: dict
    since: float

    def view(self):
        return (self.name, self.address, self.incarnation, self.state, self.meta)


class _Broadcast:
    __slots__ = ("about", "message", "sent")

    def __init__(self, about, message):
        self.about = about
        self.message = message
        self.sent = 0


class Swim:
    def __init__(self, name, address, meta=None, config=None, rng=None, now=0.0):
        self.name = name
        self.address = address
        self.config = config or SwimConfig()
        self.rng = rng or random.Random()
        self.incarnation = 0
        me = Member(name, address, 0, ALIVE, dict(meta or {}), now)
        self.members = {name: me}
        self.outbox = []
        self.events = []
        self._broadcasts = {}          # member name -> _Broadcast (newest news only)
        self._probe_order = []
        self._next_probe = now + self.rng.uniform(0, self.config.probe_interval)
        self._next_gossip = now + self.rng.uniform(0, self.config.gossip_interval)
        self._next_push_pull = now + self.config.push_pull_interval
        self._next_reconnect = now + self.config.reconnect_interval
        self._seq = 0
        self._probe = None             # the probe in progress: dict
        self._relays = {}              # our seq -> (requester address, their seq, deadline)
        self._suspicions = {}          # name -> (incarnation, deadline)
        self.leaving = False

    # -- inputs ----------------------------------------------------------------------------------
    def join(self, seed_addresses, now):
        """Push our state to each seed; their answers bring us the cluster."""
        for address in seed_addresses:
            if address != self.address:
                self._send(address, (PUSH_PULL, self.name, self._state_views(), False))

    def leave(self, now):
        """Graceful leave: tell the others we are gone, so they need not suspect us."""
        self.leaving = True
        self.incarnation += 1
        me = self.members[self.name]
        me.incarnation = self.incarnation
        me.state = LEFT
        self._queue_broadcast(self.name, ("dead", self.name, self.incarnation, self.name))
        targets = self._alive_others()
        self.rng.shuffle(targets)
        for m in targets[: max(self.config.gossip_fanout * 2, 1)]:
            self._send(m.address, (GOSSIP, self.name, self._take_piggyback(all_of_them=True)))

    def update_meta(self, meta, now):
        """New resources/load for this member: gossip them with a new incarnation."""
        self.incarnation += 1
        me = self.members[self.name]
        me.meta = dict(meta)
        me.incarnation = self.incarnation
        self._queue_broadcast(self.name, ("alive", self.name, self.incarnation, self.address, me.meta))

    def tick(self, now):
        """Run whatever timers are due."""
        if self.leaving:
            return
        probe = self._probe
        if probe is not None:
            if not probe["acked"] and not probe["indirect"] and now >= probe["sent"] + self.config.probe_timeout:
                self._probe_indirectly(probe, now)
            if now >= probe["sent"] + self.config.probe_interval:
                if not probe["acked"]:
                    self._suspect(probe["target"], now, reason_from=self.name)
                self._probe = None
        if self._probe is None and now >= self._next_probe:
            self._next_probe = now + self.config.probe_interval
            self._start_probe(now)
        for name, (inc, deadline) in list(self._suspicions.items()):
            if now >= deadline:
                del self._suspicions[name]
                m = self.members.get(name)
                if m is not None and m.state == SUSPECT and m.incarnation == inc:
                    self._declare_dead(m, inc, self.name, now)
        for seq, (_, _, deadline) in list(self._relays.items()):
            if now >= deadline:
                del self._relays[seq]
        if now >= self._next_gossip:
            self._next_gossip = now + self.config.gossip_interval
            self._gossip()
        if now >= self._next_push_pull:
            self._next_push_pull = now + self.config.push_pull_interval
            others = self._alive_others()
            if others:
                self._send(self.rng.choice(others).address, (PUSH_PULL, self.name, self._state_views(), False))
        if now >= self._next_reconnect:
            self._next_reconnect = now + self.config.reconnect_interval
            dead = [m for m in self.members.values() if m.state == DEAD]
            if dead:
                self._send(self.rng.choice(dead).address, (PUSH_PULL, self.name, self._state_views(), False))
        for m in [m for m in self.members.values() if m.state in (DEAD, LEFT)
                  and now - m.since > self.config.dead_reap_after]:
            del self.members[m.name]

    def receive(self, sender_address, message, now):
        if self.leaving:
            return
        kind = message[0]
        if kind == PING:
            _, seq, from_name, target, piggyback = message
            self._apply_all(piggyback, now)
            if target == self.name:
                self._send(sender_address, (ACK, seq, self.name, self._take_piggyback()))
        elif kind == ACK:
            _, seq, from_name, piggyback = message
            self._apply_all(piggyback, now)
            self._on_ack(seq, now)
        elif kind == PING_REQ:
            _, seq, from_name, target_name, target_address, piggyback = message
            self._apply_all(piggyback, now)
            self._seq += 1
            self._relays[self._seq] = (sender_address, seq, now + self.config.probe_interval)
            self._send(target_address, (PING, self._seq, self.name, target_name, self._take_piggyback()))
        elif kind == GOSSIP:
            _, from_name, piggyback = message
            self._apply_all(piggyback, now)
        elif kind == PUSH_PULL:
            _, from_name, views, is_reply = message
            for view in views:
                self._merge_view(view, now)
            if not is_reply:
                self._send(sender_address, (PUSH_PULL, self.name, self._state_views(), True))
        else:
            raise ValueError(f"unknown SWIM message kind {kind!r}")

    # -- outputs ---------------------------------------------------------------------------------
    def take_outbox(self):
        out, self.outbox = self.outbox, []
        return out

    def take_events(self):
        out, self.events = self.events, []
        return out

    def alive_members(self):
        return [m for m in self.members.values() if m.state == ALIVE]

    def member_states(self):
        return {name: m.state for name, m in self.members.items()}

    # -- probing ---------------------------------------------------------------------------------
    def _start_probe(self, now):
        target = self._next_probe_target()
        if target is None:
            return
        self._seq += 1
        self._probe = {"seq": self._seq, "target": target.name, "sent": now, "acked": False,
                       "indirect": False}
        self._send(target.address, (PING, self._seq, self.name, target.name, self._take_piggyback()))

    def _next_probe_target(self):
        while True:
            if not self._probe_order:
                candidates = [m.name for m in self.members.values()
                              if m.name != self.name and m.state in (ALIVE, SUSPECT)]
                if not candidates:
                    return None
                self.rng.shuffle(candidates)
                self._probe_order = candidates
            name = self._probe_order.pop()
            m = self.members.get(name)
            if m is not None and m.state in (ALIVE, SUSPECT):
                return m

    def _probe_indirectly(self, probe, now):
        probe["indirect"] = True
        target = self.members.get(probe["target"])
        if target is None:
            return
        helpers = [m for m in self._alive_others() if m.name != target.name]
        self.rng.shuffle(helpers)
        for helper in helpers[: self.config.indirect_checks]:
            self._send(helper.address, (PING_REQ, probe["seq"], self.name, target.name, target.address,
                                        self._take_piggyback()))

    def _on_ack(self, seq, now):
        relay = self._relays.pop(seq, None)
        if relay is not None:
            requester, their_seq, _ = relay
            self._send(requester, (ACK, their_seq, self.name, self._take_piggyback()))
            return
        probe = self._probe
        if probe is not None and probe["seq"] == seq:
            probe["acked"] = True

    # -- state changes ---------------------------------------------------------------------------
    def _suspect(self, name, now, reason_from):
        m = self.members.get(name)
        if m is None or m.state != ALIVE:
            return
        self._apply(("suspect", name, m.incarnation, reason_from), now)

    def _apply_all(self, broadcasts, now):
        for b in broadcasts:
            self._apply(b, now)

    def _apply(self, news, now):
        kind, name = news[0], news[1]
        if kind == "alive":
            _, _, inc, address, meta = news
            self._on_alive(name, inc, address, meta, now)
        elif kind == "suspect":
            _, _, inc, from_name = news
            self._on_suspect(name, inc, from_name, now)
        elif kind == "dead":
            _, _, inc, from_name = news
            self._on_dead(name, inc, from_name, now)

    def _on_alive(self, name, inc, address, meta, now):
        if name == self.name:
            return      # only we speak for ourselves
        m = self.members.get(name)
        if m is None:
            m = self.members[name] = Member(name, address, inc, ALIVE, dict(meta), now)
            self.events.append(("join", m))
            self._queue_broadcast(name, ("alive", name, inc, address, meta))
            return
        if inc <= m.incarnation:
            return      # news about a member wins only with a higher incarnation
        was = m.state
        m.incarnation = inc
        m.address = address
        m.meta = dict(meta)
        m.state = ALIVE
        m.since = now
        self._suspicions.pop(name, None)
        self.events.append(("join" if was in (DEAD, LEFT) else "update", m))
        self._queue_broadcast(name, ("alive", name, inc, address, meta))

    def _on_suspect(self, name, inc, from_name, now):
        if name == self.name:
            self._refute(inc)
            return
        m = self.members.get(name)
        if m is None or inc < m.incarnation or m.state in (DEAD, LEFT):
            return
        if m.state == SUSPECT and inc == m.incarnation:
            return
        m.incarnation = inc
        m.state = SUSPECT
        m.since = now
        n = sum(1 for x in self.members.values() if x.state in (ALIVE, SUSPECT))
        self._suspicions[name] = (inc, now + self.config.suspicion_timeout(n))
        self.events.append(("suspect", m))
        self._queue_broadcast(name, ("suspect", name, inc, from_name))

    def _on_dead(self, name, inc, from_name, now):
        if name == self.name:
            if not self.leaving:
                self._refute(inc)
            return
        m = self.members.get(name)
        if m is None or inc < m.incarnation or m.state in (DEAD, LEFT):
            return
        self._declare_dead(m, inc, from_name, now)

    def _declare_dead(self, m, inc, from_name, now):
        m.incarnation = inc
        m.state = LEFT if from_name == m.name else DEAD
        m.since = now
        self._suspicions.pop(m.name, None)
        self.events.append(("leave" if m.state == LEFT else "dead", m))
        self._queue_broadcast(m.name, ("dead", m.name, inc, from_name))

    def _refute(self, inc):
        self.incarnation = max(self.incarnation, inc) + 1
        me = self.members[self.name]
        me.incarnation = self.incarnation
        self._queue_broadcast(self.name, ("alive", self.name, self.incarnation, self.address, me.meta))

    def _merge_view(self, view, now):
        name, address, inc, state, meta = view
        if state == ALIVE:
            self._on_alive(name, inc, address, meta, now)
        elif state == SUSPECT:
            if name not in self.members and name != self.name:
                self._on_alive(name, inc, address, meta, now)
            self._on_suspect(name, inc, name, now)
        elif state in (DEAD, LEFT):
            if name == self.name:
                if not self.leaving:
                    self._refute(inc)
                return
            if name not in self.members:
                return    # no need to learn of the dead we never knew
            self._on_dead(name, inc, name if state == LEFT else self.name, now)

    def _state_views(self):
        return [m.view() for m in self.members.values()]

    # -- dissemination ---------------------------------------------------------------------------
    def _queue_broadcast(self, about, message):
        self._broadcasts[about] = _Broadcast(about, message)

    def _take_piggyback(self, all_of_them=False):
        if not self._broadcasts:
            return []
        n = sum(1 for m in self.members.values() if m.state in (ALIVE, SUSPECT))
        limit = self.config.retransmits(n)
        chosen = sorted(self._broadcasts.values(), key=lambda b: b.sent)
        if not all_of_them:
            chosen = chosen[: self.config.max_piggyback]
        out = []
        for b in chosen:
            out.append(b.message)
            b.sent += 1
            if b.sent >= limit:
                self._broadcasts.pop(b.about, None)
        return out

    def _gossip(self):
        if not self._broadcasts:
            return
        others = [m for m in self.members.values() if m.name != self.name and m.state in (ALIVE, SUSPECT)]
        if not others:
            return
        self.rng.shuffle(others)
        for m in others[: self.config.gossip_fanout]:
            piggyback = self._take_piggyback()
            if not piggyback:
                break
            self._send(m.address, (GOSSIP, self.name, piggyback))

    def _alive_others(self):
        return [m for m in self.members.values() if m.name != self.name and m.state == ALIVE]

    def _send(self, address, message):
        self.outbox.append((address, message))
