-- GET PATH?QUERY with QUERY a random line of a file, one query string per line.
--   wrk ... -s bench/lua/status.lua URL -- PATH LIST_FILE
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
done = dofile(here .. "report.lua").done

local path, queries = nil, {}

function init(args)
   path = args[1]
   for line in io.lines(args[2]) do
      if line ~= "" then
         queries[#queries + 1] = line
      end
   end
   assert(#queries > 0, "no query strings in " .. args[2])
   -- Each wrk thread has its own Lua state; the address of its table tells them apart.
   math.randomseed(os.time() + tonumber(tostring(queries):match("0x(%x+)") or "0", 16))
end

function request()
   return wrk.format(nil, path .. "?" .. queries[math.random(#queries)])
end
