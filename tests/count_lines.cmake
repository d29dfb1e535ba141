# Fails when FILE has more than MAX_LINES lines.
file(STRINGS ${FILE} lines)
list(LENGTH lines count)
message(STATUS "${FILE}: ${count} lines (limit ${MAX_LINES})")
if(count GREATER MAX_LINES)
  message(FATAL_ERROR "${FILE} has ${count} lines, more than ${MAX_LINES}")
endif()
