"""Imported last by the fork server of tests/prewarmed.py, after everything it preloads:
``gc.freeze()``.

Every `hilt` child forked from it shares the server's memory until it writes to it. The
first full garbage collection in a child walked every object the server had imported, so
it copied nearly all of that memory: 0.25-0.3 s of CPU in each child, even one that does
nothing. Frozen, those objects are left out of the child's collections (they live as long
as the process anyway). Nothing else imports this module.
"""

import gc

gc.freeze()
