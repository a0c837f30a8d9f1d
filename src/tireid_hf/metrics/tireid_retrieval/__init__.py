"""The `evaluate` module ``tireid_retrieval`` (``tireid_retrieval.py``, card ``README.md``) and the one
implementation of the retrieval metrics it and tireid-hf use (``ranking.py``)."""
