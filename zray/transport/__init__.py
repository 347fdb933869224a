"""The only place zray touches ZeroMQ: addresses, sockets, framing and the message catalogue."""
