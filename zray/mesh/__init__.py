"""The mesh: many nodes and no head. Membership by SWIM gossip (swim.py), more to come."""
