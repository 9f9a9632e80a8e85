"""The fleet worker (`python -m worker.fleet`): the streams whose leases it holds, each with its own pipeline.

`main.py` is its entry point and runs a pipeline per stream held; `leases.py` takes, renews, hands
over and fences the leases (one DynamoDB item per stream, with the stream's checkpoint);
`batching.py` shares one detector between the streams, in batches.
"""
