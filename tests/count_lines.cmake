# Fails when FILE has more than MAX_LINES lines (blank lines included).
cmake_minimum_required(VERSION 3.25)
file(READ ${FILE} content)
string(REGEX MATCHALL "\n" newlines "${content}")
list(LENGTH newlines count)
message(STATUS "${FILE}: ${count} lines (limit ${MAX_LINES})")
if(count GREATER MAX_LINES)
  message(FATAL_ERROR "${FILE} has ${count} lines, more than ${MAX_LINES}")
endif()
