print("count guests")
