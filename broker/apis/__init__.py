"""One module per Kafka API, in API-key order; importing this package registers them all."""
from broker.apis import (  # noqa: F401
    produce,            # 0
    fetch,              # 1
    list_offsets,       # 2
    metadata,           # 3
    offset_commit,      # 8
    offset_fetch,       # 9
    find_coordinator,   # 10
    join_group,         # 11
    heartbeat,          # 12
    leave_group,        # 13
    sync_group,         # 14
    describe_groups,    # 15
    list_groups,        # 16
    sasl,               # 17 SaslHandshake, 36 SaslAuthenticate
    api_versions,       # 18
    create_topics,      # 19
    delete_topics,      # 20
    delete_records,     # 21
    init_producer_id,   # 22
    offset_for_leader_epoch,  # 23
    describe_configs,   # 32
    alter_configs,      # 33 and 44 (IncrementalAlterConfigs)
    describe_log_dirs,  # 35
    create_partitions,  # 37
    delete_groups,      # 42
    elect_leaders,      # 43
    offset_delete,      # 47
    vote,               # 52
    begin_quorum_epoch, # 53
    end_quorum_epoch,   # 54
    describe_quorum,    # 55
    alter_partition,    # 56
    describe_cluster,   # 60
    broker_lifecycle,   # 62 BrokerRegistration, 63 BrokerHeartbeat
    allocate_producer_ids,  # 67
)
