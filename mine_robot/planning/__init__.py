"""Coverage planning (pure layer): search areas, coverage accounting, lanes, ordering, turns and the
swept-ground (wheels-only-on-swept-ground) check. No ROS imports here."""
