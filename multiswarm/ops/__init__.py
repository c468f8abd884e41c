"""The script layer: every Lua script declared once, called through typed functions.

:mod:`multiswarm.ops.script` holds the declaration (:class:`~multiswarm.ops.script.Script`) and
the one reply decoder; one module per script family (``tasks``, ``swarms``, ``leadership``...)
declares its scripts with their keys (built in :mod:`multiswarm.keys`), arguments and reply
types, and offers a typed function per script. Components call those functions, never
``Scripts.call`` (a test forbids it).
"""
