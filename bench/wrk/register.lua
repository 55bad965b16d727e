-- POST /api/v1/auth/register with a new email each request.
-- `id` is a global: setup() gives each thread its own through
-- thread:set(), which a local of the same name would hide (every thread
-- would then send the same emails, and half the answers would be 409).
local counter = 0
id = 0
local tag = tostring(os.time()) .. tostring(math.random(1000000))

function setup(thread)
    id = id + 1
    thread:set("id", id)
end

function request()
    counter = counter + 1
    local body = string.format(
        '{"email":"r%s-%d-%d@example.com","password":"correct horse battery"}',
        tag, id, counter)
    return wrk.format("POST", nil, { ["Content-Type"] = "application/json" },
                      body)
end
