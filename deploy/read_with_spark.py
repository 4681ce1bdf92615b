"""Reads a Delta table written by deltagate with Spark: batch read, history, and a streaming
read (maintenance commits are dataChange=false, so each row is seen once)."""
import sys

from pyspark.sql import SparkSession

path = sys.argv[1]
spark = SparkSession.builder.appName("read-deltagate").getOrCreate()
df = spark.read.format("delta").load(path)
df.printSchema()
df.show(truncate=False)
spark.sql(f"DESCRIBE HISTORY delta.`{path}`").select("version", "operation", "engineInfo").show(truncate=False)
query = (spark.readStream.format("delta").load(path)
         .writeStream.format("console").trigger(availableNow=True).start())
query.awaitTermination()
