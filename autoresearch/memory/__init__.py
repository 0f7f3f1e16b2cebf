"""The night's memory: a research journal per tag, its bounded digest for the agents, and the
fingerprints that keep the loop from paying twice for one program."""
