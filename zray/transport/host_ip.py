"""Which IP address this host's zray processes listen on: one policy for `zray start` and
`python -m zray.launch` (and Train's rendezvous address).

    own_ip(interface, seed) -> (ip, how it was chosen)
        an interface asked for (--interface / ZRAY_IFNAME): its first IPv4, else IPv6, address;
        a seed on loopback (127.0.0.1, ::1, localhost): that loopback address;
        a seed elsewhere: the address this host reaches it from (the kernel's route; a UDP
        connect sends no packet), IPv4 or IPv6 as the seed is;
        no seed: the address of the default route, else the host name's, else loopback.
"""
import socket

LOOPBACK = ("127.0.0.1", "::1", "localhost")


class InterfaceError(ValueError):
    """A network interface that does not exist or has no address."""


def route_ip(host):
    """Our address on the route to `host` (IPv4 or IPv6 as `host` is), or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            ip = s.getsockname()[0]
    except OSError:
        return None
    ip = ip.split("%")[0]
    return None if ip.startswith("0.") or ip == "::" else ip


def interface_ip(name):
    """The first IPv4 (else IPv6) address of a network interface."""
    import psutil
    interfaces = psutil.net_if_addrs()
    addrs = interfaces.get(name)
    if not addrs:
        raise InterfaceError(f"no network interface {name!r} (have: "
                             f"{', '.join(sorted(interfaces))})")
    for family in (socket.AF_INET, socket.AF_INET6):
        for a in addrs:
            if a.family == family:
                return a.address.split("%")[0]
    raise InterfaceError(f"interface {name!r} has no IP address")


def own_ip(interface=None, seed=None):
    """(ip, how it was chosen) by the policy in the module's docstring."""
    if interface:
        return interface_ip(interface), f"the address of interface {interface}"
    if seed in LOOPBACK:
        return ("::1" if seed == "::1" else "127.0.0.1"), "loopback, as the seed's"
    if seed:
        ip = route_ip(seed)
        if ip:
            return ip, f"the address this host reaches {seed} from"
    ip = route_ip("10.255.255.255") or route_ip("8.8.8.8")
    if ip:
        return ip, "this host's address (its default route)"
    try:
        return socket.gethostbyname(socket.gethostname()), "the address of this host's name"
    except OSError:
        return "127.0.0.1", "loopback: this host has no other address"
