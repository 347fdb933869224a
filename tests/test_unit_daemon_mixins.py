"""The node daemon is assembled from mixins (one per service); two of them defining the same
method would silently shadow one another, so each name may be defined once, except the hooks
that are meant to be extended through super()."""
import itertools

from zray.node.daemon import NodeDaemon

EXTENDED_ON_PURPOSE = {"mesh_tick"}


def test_no_two_daemon_mixins_define_the_same_method():
    mixins = [c for c in NodeDaemon.__mro__[1:] if c.__module__.startswith("zray.node.")]
    assert len(mixins) >= 4
    names = {c: {k for k, v in vars(c).items() if callable(v) and not k.startswith("__")}
             for c in mixins}
    for a, b in itertools.combinations(mixins, 2):
        clash = (names[a] & names[b]) - EXTENDED_ON_PURPOSE
        assert not clash, f"{a.__name__} and {b.__name__} both define {sorted(clash)}"
    own = {k for k, v in vars(NodeDaemon).items() if callable(v) and not k.startswith("__")}
    for c in mixins:
        assert not (own & names[c]), f"NodeDaemon shadows {sorted(own & names[c])} of {c.__name__}"
