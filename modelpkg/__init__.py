"""The model package format shared by the agent and the component: a folder with the model's files, labels.txt
and manifest.json (what the model takes and returns, how to preprocess, the digest of every file).
See `modelpkg.manifest` for the schema. Standard library only."""
