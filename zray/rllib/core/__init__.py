"""Models: observation encoding, the torch RLModules the learner trains and their numpy twins
the env runners act with."""
