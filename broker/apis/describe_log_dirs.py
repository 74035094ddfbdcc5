"""DescribeLogDirs (35): the replicas this node stores, with their sizes on disk.

Admin tools ask every broker (kafka-log-dirs, Kafka UIs' topic sizes). A node keeps all
its partitions in one SQLite database, so it has one log directory: its `log.dirs`. A
partition's size is the bytes of its stored batches.
"""
import shutil

from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse

from broker.protocol import api

Result = DescribeLogDirsResponse.DescribeLogDirsResult


@api(DescribeLogDirsRequest, 1, 5)
async def describe_log_dirs(request, ctx):
    node, version = ctx.node, ctx.api_version
    # None asks for every partition; otherwise only those asked for that are stored here.
    wanted = None if request.topics is None else {
        (t.topic, index) for t in request.topics for index in t.partitions}
    # Topics as (name, [(partition_index, partition_size, offset_lag, is_future_key)]):
    # those fields are the same in every version, and kafka-python encodes tuples in the
    # schema's order. An answer listing thousands of partitions costs less than half.
    topics: dict[str, list[tuple[int, int, int, bool]]] = {}
    for log in sorted(node.logs.values(), key=lambda log: (log.topic, log.index)):
        if wanted is None or (log.topic, log.index) in wanted:
            # Kafka's lag of a current (not future) replica: behind its own high watermark.
            lag = max(log.high_watermark - log.local_end, 0)
            topics.setdefault(log.topic, []).append((log.index, log.size, lag, False))
    log_dir = node.config.data_dir.resolve()
    disk = shutil.disk_usage(log_dir)
    return DescribeLogDirsResponse(
        version=version, throttle_time_ms=0, error_code=0,
        results=[Result(version=version, error_code=0, log_dir=str(log_dir),
                        topics=list(topics.items()), total_bytes=disk.total,
                        usable_bytes=disk.free, is_cordoned=False)])
