-- POST /api/v1/auth/login with one account's right password.
-- Arguments after "--": EMAIL PASSWORD.
function init(args)
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.body = string.format('{"email":"%s","password":"%s"}', args[1],
                             args[2])
end
