"""One module per Kafka API, in API-key order; importing this package registers them all."""
from broker.apis import (  # noqa: F401
    produce,            # 0
    fetch,              # 1
    list_offsets,       # 2
    metadata,           # 3
    find_coordinator,   # 10
    api_versions,       # 18
    create_topics,      # 19
    delete_topics,      # 20
    delete_records,     # 21
    init_producer_id,   # 22
    describe_configs,   # 32
    alter_configs,      # 33 and 44 (IncrementalAlterConfigs)
    create_partitions,  # 37
    elect_leaders,      # 43
    vote,               # 52
    begin_quorum_epoch, # 53
    end_quorum_epoch,   # 54
    describe_quorum,    # 55
    alter_partition,    # 56
    describe_cluster,   # 60
    broker_lifecycle,   # 62 BrokerRegistration, 63 BrokerHeartbeat
)
