"""DescribeLogDirs (35): the replicas this node stores, with their sizes on disk.

Admin tools ask every broker (kafka-log-dirs, Kafka UIs' topic sizes). A node keeps all
its partitions in one SQLite database, so it has one log directory: its `log.dirs`. A
partition's size is the bytes of its stored batches.
"""
import shutil

from kafka.protocol.admin import DescribeLogDirsRequest, DescribeLogDirsResponse

from broker.protocol import api

Result = DescribeLogDirsResponse.DescribeLogDirsResult
Topic = Result.DescribeLogDirsTopic
Partition = Topic.DescribeLogDirsPartition


@api(DescribeLogDirsRequest, 1, 5)
async def describe_log_dirs(request, ctx):
    node, version = ctx.node, ctx.api_version
    # None asks for every partition; otherwise only those asked for that are stored here.
    wanted = None if request.topics is None else {
        (t.topic, index) for t in request.topics for index in t.partitions}
    topics: dict[str, list] = {}
    for log in sorted(node.logs.values(), key=lambda log: (log.topic, log.index)):
        if wanted is None or (log.topic, log.index) in wanted:
            topics.setdefault(log.topic, []).append(Partition(
                version=version, partition_index=log.index, partition_size=log.size,
                # Kafka's lag of a current (not future) replica: behind its own high watermark.
                offset_lag=max(log.high_watermark - log.local_end, 0), is_future_key=False))
    log_dir = node.config.data_dir.resolve()
    disk = shutil.disk_usage(log_dir)
    return DescribeLogDirsResponse(
        version=version, throttle_time_ms=0, error_code=0,
        results=[Result(version=version, error_code=0, log_dir=str(log_dir),
                        topics=[Topic(version=version, name=name, partitions=partitions)
                                for name, partitions in topics.items()],
                        total_bytes=disk.total, usable_bytes=disk.free, is_cordoned=False)])
