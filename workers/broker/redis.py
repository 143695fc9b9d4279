"""kombu's Redis transport, with one synchronous Redis client per channel and acknowledgements
in bulk.

kombu's Redis channel builds a new ``redis.Redis`` client for every publish, every
acknowledgement and every event it sends (``Channel.conn_or_acquire``), and building one
(its table of response callbacks) costs about 0.15 ms of CPU: several times per saga step, in the
worker, the orchestrator and whoever submits. The client only wraps the channel's connection
pool, and a ``redis.Redis`` is safe to share between threads, so this channel keeps one. It is
rebuilt if the channel's pool is replaced (after a connection error).

A worker's report can travel in the same round trip as the outcome it reports:
:meth:`Channel.render_put` gives the list key and payload kombu itself would LPUSH for a message,
and the worker's Lua script that stores the outcome pushes it (see ``workers.broker.reports``).

kombu acknowledges a message with a round trip of its own (removing it from the channel's
``unacked`` hash and index). :meth:`Channel.basic_ack_many` acknowledges a batch in one, as the
orchestrator does after each committed batch of reports.

kombu also receives one message per round trip (BRPOP) and records each as unacknowledged with
another (a MULTI of ZADD and HSET). A channel whose ``receive_batch`` is set (by the orchestrator's
report queue, ``workers.broker.reports``) takes up to that many more with every message BRPOP
hands it: a Lua script pops them and records them as unacknowledged, as kombu would, in one atomic
step, so a consumer that dies holding them loses nothing (kombu's ``restore_visible`` requeues
them).

A message a consumer holds (delivered, not yet acknowledged) sits in kombu's ``unacked`` index,
scored with the time it was delivered; kombu gives back to its queue whatever is older than the
visibility timeout. Alone, that makes the timeout a trade: short, and a long step's dispatch is
handed to a second worker while the first still runs it; long, and a dead process's messages wait
that long. Here every live process re-scores what it holds every fifth of the timeout (one ZADD
from a keeper thread, see :class:`HeldMessages`), so the timeout only has to outlast a missed
renewal or two: what a process that died (or stopped) held comes back within seconds, and a
step that runs for an hour keeps its dispatch.

What BRPOP (or the batch pop) takes from a queue that is no kombu message (not UTF-8, not JSON,
no envelope with a delivery tag, a body that does not decode) would raise out of kombu's event
loop and stop the consumer. Here it is sent to ``workyard.orchestrator`` as a dead letter instead,
with the reason and the queue it came from (:meth:`Channel.dead_letter_raw`), and the consumer
carries on with the next message.

The kombu internals this needs are reached through ``workers.broker.internals`` only.

:func:`install` points the ``redis`` transport alias (``redis://``, ``redis+socket://``) here;
every other transport is left as it is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from kombu import serialization
from kombu.messaging import Producer
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

from config import keys
from models.messages import DeadLetterReport
from models.problems import body_text
from workers.broker import internals

log = logging.getLogger(__name__)

# Pops up to ARGV[1] messages from the lists in KEYS[3..] (a queue's keys, highest priority
# first) and records each as kombu's QoS.append would: the delivery tag in the unacked index
# (KEYS[1]) scored with Redis's clock (as every holder renews and every sweep compares: see
# QoS.restore_visible), and [message, exchange, routing key] under it in the unacked hash
# (KEYS[2]). A message without a readable delivery tag goes back where it was, with those after
# it, for kombu's own path to meet. RPOP with a count needs Redis 6.2.
_POP_AND_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local want = tonumber(ARGV[1])
local taken = {}
for i = 3, #KEYS do
  if #taken >= want then break end
  local items = redis.call('RPOP', KEYS[i], want - #taken)
  if items then
    for n, raw in ipairs(items) do
      local ok, message = pcall(cjson.decode, raw)
      local props = ok and type(message) == 'table' and message['properties']
      local tag = type(props) == 'table' and props['delivery_tag']
      if type(tag) ~= 'string' then
        for back = #items, n, -1 do
          redis.call('RPUSH', KEYS[i], items[back])
        end
        return taken
      end
      local info = type(props['delivery_info']) == 'table' and props['delivery_info'] or {}
      local exchange = type(info['exchange']) == 'string' and info['exchange'] or ''
      local routing_key = type(info['routing_key']) == 'string' and info['routing_key'] or ''
      redis.call('ZADD', KEYS[1], now, tag)
      redis.call('HSET', KEYS[2], tag,
        '[' .. raw .. ',' .. cjson.encode(exchange) .. ',' .. cjson.encode(routing_key) .. ']')
      taken[#taken + 1] = raw
    end
  end
end
return taken
"""


# Scores every tag in ARGV as held now, on Redis's clock, where it is still held (XX).
_RENEW_HELD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i]) end
return #ARGV
"""


# However long kombu's own interval (10 s unless set, as workyard sets it to 1 s), a sweep is
# not put off for longer than this: an explicit ask soon after another still sweeps.
SWEEP_AT_MOST_EVERY_S = 0.5


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, knowing which deliveries the batch pop script already recorded as unacknowledged."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # Delivery tags the pop script already recorded as unacknowledged.
        self._held: set[str] = set()
        self._kept = False  # whether the process's keeper renews what this QoS holds
        self._renew_script: Any = None
        self._swept_at: float | None = None  # time.monotonic() of this QoS's last sweep

    def append(self, message: Any, delivery_tag: str) -> None:
        if not self._kept:
            _keeper().watch(self)
            self._kept = True
        if delivery_tag in self._held:
            self._held.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
            return
        super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack_many(self, delivery_tags: Sequence[str]) -> None:
        """Acknowledge deliveries in one round trip (kombu's ``ack`` takes one per delivery)."""
        with self.pipe_or_acquire() as pipe:
            pipe.zrem(self.unacked_index_key, *delivery_tags).hdel(self.unacked_key, *delivery_tags).execute()
        for tag in delivery_tags:
            # Counted against the prefetch window until kombu hears it was acknowledged.
            virtual.QoS.ack(self, tag)  # type: ignore[no-untyped-call]

    def renew_held(self) -> int:
        """Score every message this consumer holds as delivered now, so no sweep gives it back
        while we live; how many were renewed. XX: one acknowledged meanwhile stays gone."""
        kombu: Any = self.channel
        if kombu.closed:
            # A channel closed after a lost connection (a Redis restart): whatever it still
            # holds was given back as it closed, or could not be, and must come back by the
            # sweep. Its consumer lives on in a new channel that holds its own messages.
            return 0
        tags = internals.held_delivery_tags(self)
        if not tags:
            return 0
        with kombu.conn_or_acquire() as client:
            if self._renew_script is None:
                self._renew_script = client.register_script(_RENEW_HELD)
            self._renew_script(keys=[self.unacked_index_key], args=tags, client=client)
        return len(tags)

    def restore_visible(self, start: int = 0, num: int | None = 10, interval: int = 10) -> None:
        """Give back what has been held longer than the visibility timeout, as kombu does, but
        on Redis's clock: every process scores and sweeps on the same clock, so a process whose
        own clock runs ahead neither gives back what live processes hold nor keeps, when it
        dies, its own messages from coming back (the timeout is seconds, not an hour).

        At most one sweep every half ``unacked_restore_interval`` (workyard's: a second), and
        every half second at most: kombu asks on its event loop's timer every interval, but a
        consumer that drains its connection instead (the orchestrator's report consumer) is
        asked after every poll that found nothing, which at 150 reports a second was 150 sweeps
        of four round trips each. Half, so that a timer that fires a little early still sweeps
        every interval."""
        kombu: Any = self.channel
        now = time.monotonic()
        every = min(SWEEP_AT_MOST_EVERY_S, float(getattr(kombu, "unacked_restore_interval", 0) or 0) / 2)
        if self._swept_at is not None and now - self._swept_at < every:
            return
        self._swept_at = now
        with kombu.conn_or_acquire() as client:
            seconds, micros = client.time()
            ceil = seconds + micros / 1_000_000 - float(self.visibility_timeout)
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    visible = client.zrange(
                        self.unacked_index_key,
                        ceil,
                        0,
                        desc=True,
                        byscore=True,
                        offset=num and start,
                        num=num,
                        withscores=True,
                    )
                    for tag, _score in visible or []:
                        self.restore_by_tag(tag, client)  # type: ignore[no-untyped-call]
            except kombu_redis.MutexHeld:
                pass


# Held messages are re-scored this often, as a share of the visibility timeout: four renewals
# can fail (a Redis failover, a long GC pause) before a live consumer's message is given back.
RENEWALS_PER_TIMEOUT = 5
KEEPER_TICK_S = 0.5


class HeldMessages:
    """One thread per process that keeps the messages its consumers hold from being given back
    (see the module). It serves every QoS that ever held a message, and forgets one whose
    channel is gone."""

    def __init__(self) -> None:
        self._watched: weakref.WeakSet[QoS] = weakref.WeakSet()
        self._due: weakref.WeakKeyDictionary[QoS, float] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="workyard-held-messages", daemon=True)
        self._thread.start()

    def watch(self, qos: QoS) -> None:
        with self._lock:
            self._watched.add(qos)
            self._due[qos] = time.monotonic() + _interval(qos)

    def _run(self) -> None:
        while True:
            try:
                self._tick()
            except Exception:
                # Were this thread to die, every message the process holds would be given back
                # to its queue while the process runs it: it must outlive any one failure.
                log.exception("renewing held messages failed; going on")

    def _tick(self) -> None:
        time.sleep(KEEPER_TICK_S)
        now = time.monotonic()
        with self._lock:
            due = [qos for qos in self._watched if self._due.get(qos, 0.0) <= now]
            for qos in due:
                self._due[qos] = now + _interval(qos)
        for qos in due:
            try:
                qos.renew_held()
            except Exception as exc:  # Redis away: the next tick tries again, well in time
                log.warning("could not renew the messages this process holds: %s", exc)


def _interval(qos: QoS) -> float:
    timeout: Any = qos.visibility_timeout
    return max(float(timeout) / RENEWALS_PER_TIMEOUT, KEEPER_TICK_S)


_KEEPER: tuple[int, HeldMessages] | None = None
_KEEPER_LOCK = threading.Lock()


def _keeper() -> HeldMessages:
    """The process's keeper; a forked process gets its own (threads do not survive fork)."""
    global _KEEPER
    keeper = _KEEPER
    if keeper is not None and keeper[0] == os.getpid():
        return keeper[1]
    with _KEEPER_LOCK:
        if _KEEPER is None or _KEEPER[0] != os.getpid():
            _KEEPER = (os.getpid(), HeldMessages())
        return _KEEPER[1]


class Channel(internals.RedisChannel):
    """kombu's Redis channel with one shared client, batched receives and acknowledgements, and rendered puts."""

    QoS = QoS
    _sync_client: Any = None
    # Messages to take along with each one BRPOP delivers (0: one per round trip, as kombu).
    receive_batch = 0
    _pop_script: Any = None
    # Where what a queue holds that is no message goes, as a dead letter: the orchestrator keeps it.
    dead_letter_queue = keys.ORCHESTRATOR_QUEUE

    def receive_raw(self, raw: bytes, queue: str) -> None:
        message = self._readable(raw)
        if isinstance(message, str):
            self.dead_letter_raw(raw, queue, message)
            return
        internals.deliver(self, message, queue)

    def _readable(self, raw: bytes) -> dict[str, Any] | str:
        """The kombu message ``raw`` holds, or why it holds none: not UTF-8, not JSON, not a kombu
        envelope (properties with a delivery tag; a body that decodes as its properties say).
        kombu would raise on each of these, out of the consumer's event loop."""
        try:
            loads: Any = kombu_json.loads
            message = loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return f"not UTF-8 ({exc.reason} at byte {exc.start})"
        except ValueError as exc:
            return f"not JSON ({exc})"
        if not isinstance(message, dict):
            return f"not a kombu message (a JSON {type(message).__name__}, not an object)"
        properties = message.get("properties")
        if not isinstance(properties, dict) or not isinstance(properties.get("delivery_tag"), str):
            return "not a kombu message (no properties with a delivery tag)"
        body = message.get("body")
        if body:
            try:
                # What kombu's Message does first; a few microseconds for a step's dispatch.
                self.decode_body(body, properties.get("body_encoding"))  # type: ignore[no-untyped-call]
            except Exception as exc:
                return f"body does not decode as {properties.get('body_encoding')!r} ({type(exc).__name__}: {exc})"
        return message

    def dead_letter_raw(self, raw: bytes, queue: str, why: str, *, held: bool = False) -> None:
        """Send what ``queue`` held that is no message to the orchestrator as a dead letter. If
        the broker is away, raise (kombu reconnects) with ``raw`` kept: a message the batch pop
        ``held`` comes back from kombu's unacknowledged records; one BRPOP took is put back at the
        end BRPOP reads from (of the queue's default-priority list), to be met again next."""
        reason = f"undecodable message: {why}"
        log.warning("dead-lettering a message from %s: %s", queue, reason)
        letter = DeadLetterReport(source=queue, reason=reason, body=body_text(raw))
        try:
            # The default exchange: to the queue by name, as reports travel.
            producer: Any = Producer(self, serializer="json", auto_declare=False)  # type: ignore[no-untyped-call]
            producer.publish(letter.model_dump(mode="json"), routing_key=self.dead_letter_queue, delivery_mode=2)
        except self.connection_errors:
            if not held:
                try:
                    kombu: Any = self
                    with kombu.conn_or_acquire() as client:
                        client.rpush(queue, raw)
                except Exception as exc:
                    log.error("lost an undecodable message from %s (%s): %s", queue, exc, letter.body[:1000])
            raise
        except Exception:
            # Not the broker: raising would stop the consumer, and the message would only come
            # back to fail the same way.
            log.exception("could not dead-letter a message from %s; dropped: %s", queue, letter.body[:1000])

    def after_brpop_delivery(self) -> None:
        if self.receive_batch:
            self._receive_more()

    def _receive_more(self) -> None:
        queues = self.active_queues
        if len(queues) != 1 or self.global_keyprefix:
            return  # the batch would have to pick among queues; kombu's cycle does that
        queue = queues[0]
        room = self.qos.can_consume_max_estimate()
        want = self.receive_batch if room is None else min(self.receive_batch, room)
        if want <= 0:
            return
        kombu: Any = self
        qos: Any = self.qos
        # The lists in the order BRPOP reads them, highest priority first.
        keys = [qos.unacked_index_key, qos.unacked_key] + [
            internals.queue_key(self, queue, pri) for pri in kombu.priority_steps
        ]
        with kombu.conn_or_acquire() as client:
            if self._pop_script is None:
                self._pop_script = client.register_script(_POP_AND_HOLD)
            try:
                items = self._pop_script(keys=keys, args=[want], client=client)
            except redis.ResponseError as exc:
                # Refused before it popped anything (RPOP with a count needs Redis 6.2): receive
                # one message per round trip from here on, as kombu does.
                log.warning("receiving messages one at a time: Redis refused the batch pop (%s)", exc)
                self.receive_batch = 0
                return
        for raw in items:
            message = self._readable(raw)
            if isinstance(message, str):
                # Held by the script on a tag it could read; not a message kombu can deliver.
                self.dead_letter_raw(raw, queue, message, held=True)
                self._forget(raw)
                continue
            qos._held.add(message["properties"]["delivery_tag"])
            internals.deliver(self, message, queue)

    def _forget(self, raw: bytes) -> None:
        """Drop what the pop script recorded as held for ``raw`` (by the tag it read in it)."""
        try:
            tag = json.loads(raw.decode("utf-8", errors="replace"))["properties"]["delivery_tag"]
        except (ValueError, TypeError, KeyError):
            return
        qos: Any = self.qos
        kombu: Any = self
        with kombu.conn_or_acquire() as client:
            client.pipeline().zrem(qos.unacked_index_key, tag).hdel(qos.unacked_key, tag).execute()

    def basic_ack_many(self, delivery_tags: Sequence[str]) -> None:
        """Acknowledge deliveries of this channel in one round trip."""
        if delivery_tags:
            self.qos.ack_many(delivery_tags)

    def render_put(self, body: Any, routing_key: str) -> tuple[str, str] | None:
        """The list key and the payload that publishing ``body`` (JSON, persistent, through the
        default exchange to queue ``routing_key``) would LPUSH, made by kombu's own code, as
        ``Producer.publish`` and ``_put`` do. None where that publish would do more than one
        LPUSH (a global key prefix, a queue that expires)."""
        if self.global_keyprefix or routing_key in internals.expiring_queues(self):
            return None
        kombu: Any = self  # kombu's channel API carries no annotations
        serialize: Any = serialization.dumps
        encode: Any = kombu_json.dumps
        content_type, content_encoding, data = serialize(body, serializer="json")
        message = kombu.prepare_message(data, 0, content_type, content_encoding, {}, {"delivery_mode": 2})
        internals.augment_message(self, message, "", routing_key)
        key = internals.queue_key(self, routing_key, internals.message_priority(self, message))
        return key, str(encode(message))

    def sync_client(self) -> Any:
        try:
            pool = self.pool
        except AttributeError:
            if getattr(self.connection, "client", None) is not None:
                raise
            # The transport was detached from its connection (closed after the broker went away)
            # and the pool dropped: kombu fails building a new one with an AttributeError that
            # Celery's worker does not survive (it happens while the channel closes, giving back
            # the messages it holds). A connection error is what the caller expects and recovers
            # from: the worker reconnects, and the messages come back by the visibility timeout
            # (or, from a Redis that lost its data, by the orchestrator's re-dispatch).
            raise redis.ConnectionError("the broker connection was closed") from None
        client = self._sync_client
        if client is None or client.connection_pool is not pool:
            client = self._sync_client = self.new_sync_client()
        return client


class Transport(kombu_redis.Transport):
    """kombu's Redis transport using workyard's channel; install() points the redis aliases at it."""

    Channel = Channel


def install() -> None:
    TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
