"""Vote (52): a voter standing for election, or asking first with a pre-vote."""
from broker.apis.quorum_partitions import answer_per_partition
from broker.messages import VoteRequest, VoteResponse
from broker.protocol import api


@api(VoteRequest, 0, 2, inter_node=True)
async def vote(request, ctx):
    async def answer(wanted) -> dict:
        error, granted = await ctx.node.quorum.vote(
            wanted.replica_id, wanted.replica_epoch, wanted.last_offset_epoch,
            wanted.last_offset, ctx.api_version >= 2 and wanted.pre_vote)
        return {"error_code": error, "vote_granted": granted}

    return await answer_per_partition(request, VoteResponse, ctx, answer)
