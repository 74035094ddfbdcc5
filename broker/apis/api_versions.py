"""ApiVersions (18): the version ranges every client negotiates against."""
from kafka.protocol.metadata import ApiVersionsRequest, ApiVersionsResponse

from broker.protocol import api, supported_versions


@api(ApiVersionsRequest, 0, 4)
async def api_versions(request, ctx):
    return ApiVersionsResponse(version=ctx.api_version, error_code=0, throttle_time_ms=0,
                               api_keys=supported_versions())
