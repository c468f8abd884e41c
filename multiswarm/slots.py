"""Where coordination partitions sit on a Redis Cluster's slot ring (decision 44)."""

from __future__ import annotations

from redis.crc import key_slot  # the client's own CRC16, the server's CLUSTER KEYSLOT

#: Hash slots of a Redis Cluster (CLUSTER KEYSLOT is CRC16 of the tag mod 16384).
SLOTS = 16384


def partition_tag(namespace: str, partition: int, partitions: int) -> str:
    """The hash tag (without braces) of coordination partition ``partition`` of ``partitions``.

    Partition 0 is the namespace itself (``{ns}``), so a deployment of one partition keeps the
    layout it always had, and partition 0 is also the control slot. The slot ring is cut into
    ``partitions`` equal arcs (``round(i * 16384 / partitions)`` onwards, as ``redis-cli
    --cluster create`` splits slots over masters); partition 0 sits in the arc of ``{ns}``'s
    slot, and partition ``k`` is ``<ns>:p<k>.<j>`` with the smallest ``j >= 0`` whose slot lies
    in the ``k``-th arc after it. A cluster whose slots are split evenly over ``m`` masters then
    holds ``partitions / m`` partitions on each, where plain names would share a master by
    chance (decision 44). About ``partitions`` names are tried; pure, deterministic.
    """
    if partition == 0:
        return namespace
    width = SLOTS / partitions
    arc = (int(key_slot(namespace.encode()) / width) + partition) % partitions
    lo, hi = round(arc * width), round((arc + 1) * width)
    j = 0
    while True:
        tag = f"{namespace}:p{partition}.{j}"
        if lo <= key_slot(tag.encode()) < hi:
            return tag
        j += 1
